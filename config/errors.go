package config

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Error is one problem found in a config file. It carries the position so
// that `apicall check` can print `file:line: message` lines an editor can
// jump to.
type Error struct {
	// File is the config file's path as given to Load.
	File string
	// Line is 1-based; 0 when the problem has no single line (an unreadable
	// file, a missing top-level section).
	Line int
	// Msg says what is wrong and, where it helps, what to write instead.
	Msg string
	// Err is the underlying cause, if any (for errors.Is, e.g. fs.ErrNotExist).
	Err error
}

// Error formats the problem as `file:line: message`.
func (e *Error) Error() string {
	switch {
	case e.File != "" && e.Line > 0:
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
	case e.File != "":
		return e.File + ": " + e.Msg
	case e.Line > 0:
		return fmt.Sprintf("line %d: %s", e.Line, e.Msg)
	}
	return e.Msg
}

// Unwrap returns the underlying cause.
func (e *Error) Unwrap() error { return e.Err }

// Errors is every problem found in one config file, sorted by line. Load
// reports them all at once (as *Errors) so that an operator fixes a file in
// one pass instead of one error per run.
type Errors []*Error

// Error prints one problem per line.
func (es Errors) Error() string {
	var b strings.Builder
	for i, e := range es {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(e.Error())
	}
	return b.String()
}

// Unwrap exposes each problem to errors.Is and errors.As.
func (es Errors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}

// As lets callers ask for the list by value (var es config.Errors;
// errors.As(err, &es)) as well as by pointer, whichever they reach for.
func (es *Errors) As(target any) bool {
	if t, ok := target.(*Errors); ok {
		*t = *es
		return true
	}
	return false
}

// errorList collects problems while a file is loaded. It is not an error
// itself so that a forgotten "if len() > 0" cannot return an empty error.
type errorList struct {
	file string
	errs Errors
}

// add records a problem at line (already mapped to the original file).
func (l *errorList) add(line int, format string, args ...any) {
	l.errs = append(l.errs, &Error{File: l.file, Line: line, Msg: fmt.Sprintf(format, args...)})
}

// addErr records a problem carrying an underlying error.
func (l *errorList) addErr(line int, err error, format string, args ...any) {
	l.errs = append(l.errs, &Error{File: l.file, Line: line, Msg: fmt.Sprintf(format, args...), Err: err})
}

// has reports whether a problem was already recorded at line, so checks of
// a value that failed to decode do not pile up after the decode error.
func (l *errorList) has(line int) bool {
	for _, e := range l.errs {
		if e.Line == line {
			return true
		}
	}
	return false
}

// err returns the collected problems as *Errors sorted by line (stable, so
// problems on one line keep the order they were found in), or nil.
func (l *errorList) err() error {
	if len(l.errs) == 0 {
		return nil
	}
	es := slices.Clone(l.errs)
	slices.SortStableFunc(es, func(a, b *Error) int { return cmp.Compare(a.Line, b.Line) })
	return &es
}

// asConfigError turns an error from a yaml.Unmarshaler (Topic) into an *Error,
// keeping its line; ok is false when err carries no position.
func asConfigError(err error) (*Error, bool) {
	var e *Error
	if errors.As(err, &e) {
		return e, true
	}
	return nil, false
}
