package schemas

import (
	"bytes"
	"unsafe"
)

// Conditions and snippet tags read members of the user profile
// (user.country, user.email): several per event, and each was a gjson scan
// of the profile from its first byte (about 7% of apicall's CPU in make
// bench). The decoder walks the profile anyway to find where it ends, so it
// notes where each top-level member sits, and a lookup of user.KEY becomes
// a short search of that list (Event.UserMember).

// objMember is one top-level member of an object: its key (without quotes)
// and its value, as offsets into the object.
type objMember struct{ key0, key1, val0, val1 int32 }

// maxIndexed bounds the members indexed per profile; a profile with more
// is not indexed (lookups scan it, as before).
const maxIndexed = 64

// userIndex is the member list of Event.User, with the slice it was built
// for, so a User replaced after decoding is never read through a stale
// index.
type userIndex struct {
	members []objMember
	base    *byte
	n       int
}

// indexObject walks the object that starts at b[i] == '{' (b must be valid
// JSON) and returns the index after it, and its members in order, offsets
// relative to b[i]. ok is false when a key holds an escape (lookups compare
// raw bytes) or there are more than maxIndexed members.
func indexObject(b []byte, i int) (end int, members []objMember, ok bool) {
	var buf [maxIndexed]objMember
	n, start := 0, i
	ok = true
	i = skipWS(b, i+1)
	if b[i] == '}' {
		return i + 1, nil, true
	}
	for {
		ks := i
		i = skipString(b, i)
		ke := i
		if ok && bytes.IndexByte(b[ks+1:ke-1], '\\') >= 0 {
			ok = false
		}
		i = skipWS(b, i)
		i = skipWS(b, i+1) // ':'
		vs := i
		i = skipValue(b, i)
		if ok {
			if n == maxIndexed {
				ok = false
			} else {
				buf[n] = objMember{int32(ks + 1 - start), int32(ke - 1 - start), int32(vs - start), int32(i - start)}
				n++
			}
		}
		i = skipWS(b, i)
		if b[i] != ',' {
			break // '}'
		}
		i = skipWS(b, i+1)
	}
	if !ok {
		return i + 1, nil, false
	}
	return i + 1, append([]objMember(nil), buf[:n]...), true
}

// setUserIndex records members as the index of e.User.
func (e *Event) setUserIndex(members []objMember) {
	e.userIndex = userIndex{members: members, base: unsafe.SliceData(e.User), n: len(e.User)}
}

// UserMember returns the value of the nth (from 0) top-level member key of
// User, as raw JSON; an object may repeat a key, and gjson takes the first
// one, or for a nested path the first one the path goes on in. indexed is
// false when the
// decoder left no index for this User (a key with an escape, very many
// members, or an Event not made by a Decoder): the caller must look the
// key up itself. The value is a sub-slice of User: read-only.
func (e *Event) UserMember(key string, nth int) (value []byte, found, indexed bool) {
	ix := &e.userIndex
	if ix.base == nil || ix.base != unsafe.SliceData(e.User) || ix.n != len(e.User) {
		return nil, false, false
	}
	for _, m := range ix.members {
		if string(e.User[m.key0:m.key1]) == key {
			if nth == 0 {
				return e.User[m.val0:m.val1], true, true
			}
			nth--
		}
	}
	return nil, false, true
}
