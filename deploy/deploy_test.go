package deploy

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

const (
	internalsDoc = "../docs/internals.md"
	deployDoc    = "../docs/deploy.md"
	k8sDir       = "kubernetes"
)

// decodeAll decodes every document of a multi-document YAML stream. Empty
// documents (a lone "---") are skipped.
func decodeAll(t *testing.T, path string) []*yaml.Node {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var docs []*yaml.Node
	dec := yaml.NewDecoder(f)
	for {
		var n yaml.Node
		err := dec.Decode(&n)
		if errors.Is(err, io.EOF) {
			return docs
		}
		if err != nil {
			t.Fatalf("%s: document %d: %v", path, len(docs)+1, err)
		}
		if len(n.Content) > 0 {
			docs = append(docs, &n)
		}
	}
}

// manifest is the common shape of a Kubernetes object; Spec and Data are
// decoded further by the tests that need them.
type manifest struct {
	APIVersion string `yaml:"apiVersion"`
	Kind       string `yaml:"kind"`
	Metadata   struct {
		Name      string            `yaml:"name"`
		Namespace string            `yaml:"namespace"`
		Labels    map[string]string `yaml:"labels"`
	} `yaml:"metadata"`
	Spec       yaml.Node         `yaml:"spec"`
	Data       map[string]string `yaml:"data"`
	StringData map[string]string `yaml:"stringData"`
}

// objects decodes every Kubernetes object in deploy/kubernetes, keyed by
// "Kind/name".
func objects(t *testing.T) map[string]manifest {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(k8sDir, "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	objs := map[string]manifest{}
	for _, p := range paths {
		if filepath.Base(p) == "kustomization.yaml" {
			continue
		}
		for _, doc := range decodeAll(t, p) {
			var m manifest
			if err := doc.Decode(&m); err != nil {
				t.Fatalf("%s: %v", p, err)
			}
			if m.Kind == "" || m.Metadata.Name == "" {
				t.Fatalf("%s: object without kind or metadata.name", p)
			}
			if m.Metadata.Namespace != "" {
				t.Errorf("%s: %s/%s sets namespace %q; the manifests are namespace-agnostic", p, m.Kind, m.Metadata.Name, m.Metadata.Namespace)
			}
			key := m.Kind + "/" + m.Metadata.Name
			if _, dup := objs[key]; dup {
				t.Fatalf("%s: %s defined twice", p, key)
			}
			objs[key] = m
		}
	}
	return objs
}

// decodeSpec decodes the spec of the object key into out.
func decodeSpec(t *testing.T, objs map[string]manifest, key string, out any) {
	t.Helper()
	m := object(t, objs, key)
	if m.Spec.Kind == 0 {
		t.Fatalf("%s has no spec", key)
	}
	if err := m.Spec.Decode(out); err != nil {
		t.Fatalf("%s: spec: %v", key, err)
	}
}

func object(t *testing.T, objs map[string]manifest, key string) manifest {
	t.Helper()
	m, ok := objs[key]
	if !ok {
		t.Fatalf("no %s in %s", key, k8sDir)
	}
	return m
}

// apicallConfig is the part of config.yaml the manifests must agree with.
type apicallConfig struct {
	Kafka struct {
		Brokers []string `yaml:"brokers"`
		Group   string   `yaml:"group"`
		Topics  []struct {
			Name string `yaml:"name"`
		} `yaml:"topics"`
		InitialOffset string `yaml:"initial_offset"`
		TLS           struct {
			Enabled bool `yaml:"enabled"`
		} `yaml:"tls"`
		SASL struct {
			Mechanism string `yaml:"mechanism"`
		} `yaml:"sasl"`
	} `yaml:"kafka"`
	Admin struct {
		Listen string `yaml:"listen"`
	} `yaml:"admin"`
	Dispatch struct {
		ShutdownGrace time.Duration `yaml:"shutdown_grace"`
	} `yaml:"dispatch"`
}

// configYAML returns config.yaml from the ConfigMap.
func configYAML(t *testing.T, objs map[string]manifest) string {
	t.Helper()
	cm := object(t, objs, "ConfigMap/apicall-config")
	s, ok := cm.Data["config.yaml"]
	if !ok {
		t.Fatal("ConfigMap/apicall-config has no config.yaml")
	}
	return s
}

func loadConfig(t *testing.T, objs map[string]manifest) apicallConfig {
	t.Helper()
	var c apicallConfig
	if err := yaml.Unmarshal([]byte(configYAML(t, objs)), &c); err != nil {
		t.Fatalf("ConfigMap/apicall-config config.yaml: %v", err)
	}
	return c
}

// contractMetrics parses the metric table of docs/internals.md into
// name -> is a histogram.
func contractMetrics(t *testing.T) map[string]bool {
	t.Helper()
	b, err := os.ReadFile(internalsDoc)
	if err != nil {
		t.Fatal(err)
	}
	_, table, ok := strings.Cut(string(b), "\n## Metrics")
	if !ok {
		t.Fatalf("%s: no \"## Metrics\" section", internalsDoc)
	}
	if next := strings.Index(table, "\n## "); next >= 0 {
		table = table[:next]
	}
	metrics := map[string]bool{}
	sc := bufio.NewScanner(strings.NewReader(table))
	for sc.Scan() {
		cols := strings.Split(sc.Text(), "|")
		if len(cols) < 4 {
			continue
		}
		name := strings.Trim(strings.TrimSpace(cols[1]), "`")
		if !strings.HasPrefix(name, "apicall_") {
			continue
		}
		metrics[name] = strings.Contains(cols[2], "histogram")
	}
	if len(metrics) == 0 {
		t.Fatalf("%s: no apicall_ rows in the metrics table", internalsDoc)
	}
	return metrics
}

func readDeployDoc(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(deployDoc)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestYAMLParses decodes every YAML file under deploy/, every document, and
// the config.yaml embedded in the ConfigMap.
func TestYAMLParses(t *testing.T) {
	n := 0
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() || (filepath.Ext(path) != ".yaml" && filepath.Ext(path) != ".yml") {
			return nil
		}
		if len(decodeAll(t, path)) == 0 {
			t.Errorf("%s: no YAML documents", path)
		}
		n++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n < 9 {
		t.Errorf("found %d YAML files under deploy/, want at least 9", n)
	}
	loadConfig(t, objects(t))
}

type dashboard struct {
	Title         string  `json:"title"`
	UID           string  `json:"uid"`
	SchemaVersion int     `json:"schemaVersion"`
	Panels        []panel `json:"panels"`
	Templating    struct {
		List []struct {
			Name string `json:"name"`
			Type string `json:"type"`
		} `json:"list"`
	} `json:"templating"`
}

type panel struct {
	ID         int    `json:"id"`
	Type       string `json:"type"`
	Title      string `json:"title"`
	Datasource *struct {
		UID string `json:"uid"`
	} `json:"datasource"`
	GridPos struct {
		H, W, X, Y int
	} `json:"gridPos"`
	Targets []struct {
		Expr       string `json:"expr"`
		Datasource *struct {
			UID string `json:"uid"`
		} `json:"datasource"`
	} `json:"targets"`
	Panels []panel `json:"panels"`
}

// TestDashboard parses the dashboard and checks what breaks it on import:
// duplicate panel ids, overlapping panels, panels not bound to the
// ${DS_PROMETHEUS} variable, targets without a query.
func TestDashboard(t *testing.T) {
	paths, err := filepath.Glob("grafana/*.json")
	if err != nil || len(paths) == 0 {
		t.Fatalf("no dashboards in grafana/ (%v)", err)
	}
	for _, path := range paths {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		var d dashboard
		dec := json.NewDecoder(bytes.NewReader(b))
		if err := dec.Decode(&d); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if d.UID == "" || d.Title == "" {
			t.Errorf("%s: uid and title are required", path)
		}
		if d.SchemaVersion < 36 {
			t.Errorf("%s: schemaVersion %d, want >= 36", path, d.SchemaVersion)
		}
		if !slices.ContainsFunc(d.Templating.List, func(v struct {
			Name string `json:"name"`
			Type string `json:"type"`
		}) bool {
			return v.Name == "DS_PROMETHEUS" && v.Type == "datasource"
		}) {
			t.Errorf("%s: no datasource variable DS_PROMETHEUS", path)
		}

		ids := map[int]string{}
		var all []panel
		var collect func(ps []panel)
		collect = func(ps []panel) {
			for _, p := range ps {
				all = append(all, p)
				collect(p.Panels)
			}
		}
		collect(d.Panels)
		var queries int
		for _, p := range all {
			if prev, dup := ids[p.ID]; dup {
				t.Errorf("%s: panels %q and %q share id %d", path, prev, p.Title, p.ID)
			}
			ids[p.ID] = p.Title
			if p.Type == "row" {
				continue
			}
			if p.Datasource == nil || p.Datasource.UID != "${DS_PROMETHEUS}" {
				t.Errorf("%s: panel %q: datasource uid must be ${DS_PROMETHEUS}", path, p.Title)
			}
			if len(p.Targets) == 0 {
				t.Errorf("%s: panel %q has no targets", path, p.Title)
			}
			for i, tg := range p.Targets {
				if strings.TrimSpace(tg.Expr) == "" {
					t.Errorf("%s: panel %q target %d has no expr", path, p.Title, i)
				}
				if tg.Datasource != nil && tg.Datasource.UID != "${DS_PROMETHEUS}" {
					t.Errorf("%s: panel %q target %d: datasource uid must be ${DS_PROMETHEUS}", path, p.Title, i)
				}
				queries++
			}
			if p.GridPos.W <= 0 || p.GridPos.H <= 0 || p.GridPos.X+p.GridPos.W > 24 {
				t.Errorf("%s: panel %q: bad gridPos %+v", path, p.Title, p.GridPos)
			}
		}
		for i, a := range all {
			for _, b := range all[i+1:] {
				ga, gb := a.GridPos, b.GridPos
				if ga.X < gb.X+gb.W && gb.X < ga.X+ga.W && ga.Y < gb.Y+gb.H && gb.Y < ga.Y+ga.H {
					t.Errorf("%s: panels %q and %q overlap", path, a.Title, b.Title)
				}
			}
		}
		if queries == 0 {
			t.Errorf("%s: no queries", path)
		}
	}
}

// TestMetricNamesInContract: every metric the alerts and the dashboard use
// is in the docs/internals.md table, the histograms MetricNames knows are the
// table's histograms, and every metric of the table is on the dashboard or
// in an alert.
func TestMetricNamesInContract(t *testing.T) {
	contract := contractMetrics(t)
	names, err := MetricNames(".")
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		if _, ok := contract[n]; !ok {
			t.Errorf("%s is used by the alerts or the dashboard but is not in the metrics table of %s", n, internalsDoc)
		}
	}
	var wantHist []string
	for n, h := range contract {
		if h {
			wantHist = append(wantHist, n)
		}
		if !slices.Contains(names, n) {
			t.Errorf("%s (metrics table of %s) is on no dashboard panel and in no alert", n, internalsDoc)
		}
	}
	slices.Sort(wantHist)
	got := slices.Sorted(slices.Values(histogramNames()))
	if !slices.Equal(got, wantHist) {
		t.Errorf("histogramNames() = %v, the table's histograms are %v", got, wantHist)
	}
}

func TestFamily(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"apicall_delivery_duration_seconds_bucket", "apicall_delivery_duration_seconds"},
		{"apicall_commit_duration_seconds_sum", "apicall_commit_duration_seconds"},
		{"apicall_commit_duration_seconds_count", "apicall_commit_duration_seconds"},
		{"apicall_commits_total", "apicall_commits_total"},
		// Not a histogram: the suffix is part of the name.
		{"apicall_retry_count", "apicall_retry_count"},
	} {
		if got := family(tc.in); got != tc.want {
			t.Errorf("family(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestMetricNamesBadDir(t *testing.T) {
	if names, err := MetricNames(t.TempDir()); err == nil {
		t.Errorf("MetricNames(empty dir) = %v, want an error", names)
	}
}

type alertRule struct {
	Alert       string            `yaml:"alert"`
	Expr        string            `yaml:"expr"`
	For         string            `yaml:"for"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

// TestAlerts: the alerts the runbook promises exist, each has a severity,
// summary, description and a runbook_url whose anchor is a section of
// docs/deploy.md.
func TestAlerts(t *testing.T) {
	var rf struct {
		Groups []struct {
			Name  string      `yaml:"name"`
			Rules []alertRule `yaml:"rules"`
		} `yaml:"groups"`
	}
	b, err := os.ReadFile("prometheus/alerts.yaml")
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&rf); err != nil {
		t.Fatalf("prometheus/alerts.yaml: %v", err)
	}
	doc := readDeployDoc(t)
	seen := map[string]bool{}
	for _, g := range rf.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				continue
			}
			seen[r.Alert] = true
			if s := r.Labels["severity"]; s != "critical" && s != "warning" {
				t.Errorf("%s: severity %q, want critical or warning", r.Alert, s)
			}
			for _, a := range []string{"summary", "description", "runbook_url"} {
				if strings.TrimSpace(r.Annotations[a]) == "" {
					t.Errorf("%s: no %s annotation", r.Alert, a)
				}
			}
			wantURL := "https://github.com/apicall/apicall/blob/main/docs/deploy.md#" + strings.ToLower(r.Alert)
			if r.Annotations["runbook_url"] != wantURL {
				t.Errorf("%s: runbook_url %q, want %q", r.Alert, r.Annotations["runbook_url"], wantURL)
			}
			if !strings.Contains(doc, "\n### "+r.Alert+"\n") {
				t.Errorf("%s: %s has no \"### %s\" section (the runbook)", r.Alert, deployDoc, r.Alert)
			}
		}
	}
	for _, want := range []string{
		"ApicallLagSecondsHigh", "ApicallBreakerOpen", "ApicallDeadLettersIncreasing",
		"ApicallCommitsStalled", "ApicallCommitErrors", "ApicallDown",
	} {
		if !seen[want] {
			t.Errorf("alert %s is missing from prometheus/alerts.yaml", want)
		}
	}
}

// TestPromtool runs promtool's syntax check and the rule unit tests when
// promtool is installed (Debian: apt-get install prometheus).
func TestPromtool(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool not on PATH")
	}
	for _, args := range [][]string{
		{"check", "rules", "prometheus/alerts.yaml"},
		{"test", "rules", "prometheus/alerts_test.yaml"},
	} {
		out, err := exec.Command(promtool, args...).CombinedOutput()
		if err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// kedaSASL maps kafka.sasl.mechanism to the KEDA kafka scaler's sasl value.
var kedaSASL = map[string]string{
	"":              "",
	"PLAIN":         "plaintext",
	"SCRAM-SHA-256": "scram_sha256",
	"SCRAM-SHA-512": "scram_sha512",
}

// TestKEDA: the ScaledObject scales the Deployment on the lag of the group
// and topic apicall consumes, never beyond the partition count, and
// docs/deploy.md states maxReplicaCount.
func TestKEDA(t *testing.T) {
	objs := objects(t)
	cfg := loadConfig(t, objs)
	var so struct {
		ScaleTargetRef struct {
			Name string `yaml:"name"`
		} `yaml:"scaleTargetRef"`
		MinReplicaCount *int `yaml:"minReplicaCount"`
		MaxReplicaCount *int `yaml:"maxReplicaCount"`
		Triggers        []struct {
			Type              string            `yaml:"type"`
			Metadata          map[string]string `yaml:"metadata"`
			AuthenticationRef struct {
				Name string `yaml:"name"`
			} `yaml:"authenticationRef"`
		} `yaml:"triggers"`
	}
	decodeSpec(t, objs, "ScaledObject/apicall", &so)
	if so.ScaleTargetRef.Name != "apicall" {
		t.Errorf("scaleTargetRef.name %q, want the Deployment apicall", so.ScaleTargetRef.Name)
	}
	if so.MinReplicaCount == nil || so.MaxReplicaCount == nil || *so.MinReplicaCount < 1 || *so.MaxReplicaCount < *so.MinReplicaCount {
		t.Fatalf("minReplicaCount/maxReplicaCount missing or inconsistent")
	}
	doc := readDeployDoc(t)
	if want := fmt.Sprintf("maxReplicaCount: %d", *so.MaxReplicaCount); !strings.Contains(doc, want) {
		t.Errorf("%s does not document %q (the partition count of the topic)", deployDoc, want)
	}
	if len(so.Triggers) != 1 || so.Triggers[0].Type != "kafka" {
		t.Fatalf("want exactly one kafka trigger, got %+v", so.Triggers)
	}
	md := so.Triggers[0].Metadata
	group := cfg.Kafka.Group
	if group == "" {
		group = "apicall"
	}
	var topics []string
	for _, tp := range cfg.Kafka.Topics {
		topics = append(topics, tp.Name)
	}
	for key, want := range map[string]string{
		"bootstrapServers":   strings.Join(cfg.Kafka.Brokers, ","),
		"consumerGroup":      group,
		"allowIdleConsumers": "false",
		"lagThreshold":       "1000",
		"sasl":               kedaSASL[cfg.Kafka.SASL.Mechanism],
		"tls":                map[bool]string{true: "enable", false: "disable"}[cfg.Kafka.TLS.Enabled],
	} {
		if md[key] != want {
			t.Errorf("kafka trigger %s = %q, want %q", key, md[key], want)
		}
	}
	if !slices.Contains(topics, md["topic"]) {
		t.Errorf("kafka trigger topic %q is not one of kafka.topics %v", md["topic"], topics)
	}
	if (cfg.Kafka.InitialOffset == "" || cfg.Kafka.InitialOffset == "oldest") != (md["offsetResetPolicy"] == "earliest") {
		t.Errorf("offsetResetPolicy %q does not match kafka.initial_offset %q", md["offsetResetPolicy"], cfg.Kafka.InitialOffset)
	}

	var ta struct {
		SecretTargetRef []struct {
			Parameter string `yaml:"parameter"`
			Name      string `yaml:"name"`
			Key       string `yaml:"key"`
		} `yaml:"secretTargetRef"`
	}
	decodeSpec(t, objs, "TriggerAuthentication/"+so.Triggers[0].AuthenticationRef.Name, &ta)
	secret := object(t, objs, "Secret/apicall")
	params := map[string]bool{}
	for _, ref := range ta.SecretTargetRef {
		params[ref.Parameter] = true
		if ref.Name != secret.Metadata.Name {
			t.Errorf("TriggerAuthentication parameter %s reads Secret %q, want %q", ref.Parameter, ref.Name, secret.Metadata.Name)
		} else if _, ok := secret.StringData[ref.Key]; !ok {
			t.Errorf("TriggerAuthentication parameter %s reads key %q, not in Secret %s", ref.Parameter, ref.Key, ref.Name)
		}
	}
	if cfg.Kafka.SASL.Mechanism != "" && (!params["username"] || !params["password"]) {
		t.Errorf("SASL is on but the TriggerAuthentication has no username/password")
	}
}

type container struct {
	Name    string   `yaml:"name"`
	Image   string   `yaml:"image"`
	Args    []string `yaml:"args"`
	EnvFrom []struct {
		SecretRef *struct {
			Name string `yaml:"name"`
		} `yaml:"secretRef"`
	} `yaml:"envFrom"`
	Ports []struct {
		Name          string `yaml:"name"`
		ContainerPort int    `yaml:"containerPort"`
	} `yaml:"ports"`
	LivenessProbe  *probe `yaml:"livenessProbe"`
	ReadinessProbe *probe `yaml:"readinessProbe"`
	StartupProbe   *probe `yaml:"startupProbe"`
	Resources      struct {
		Requests map[string]string `yaml:"requests"`
		Limits   map[string]string `yaml:"limits"`
	} `yaml:"resources"`
	SecurityContext struct {
		RunAsNonRoot             *bool `yaml:"runAsNonRoot"`
		ReadOnlyRootFilesystem   *bool `yaml:"readOnlyRootFilesystem"`
		AllowPrivilegeEscalation *bool `yaml:"allowPrivilegeEscalation"`
		Capabilities             struct {
			Drop []string `yaml:"drop"`
		} `yaml:"capabilities"`
	} `yaml:"securityContext"`
	VolumeMounts []struct {
		Name      string `yaml:"name"`
		MountPath string `yaml:"mountPath"`
	} `yaml:"volumeMounts"`
}

type probe struct {
	HTTPGet struct {
		Path string    `yaml:"path"`
		Port yaml.Node `yaml:"port"`
	} `yaml:"httpGet"`
}

type deploymentSpec struct {
	Replicas int `yaml:"replicas"`
	Selector struct {
		MatchLabels map[string]string `yaml:"matchLabels"`
	} `yaml:"selector"`
	Template struct {
		Metadata struct {
			Labels      map[string]string `yaml:"labels"`
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"metadata"`
		Spec struct {
			TerminationGracePeriodSeconds int `yaml:"terminationGracePeriodSeconds"`
			SecurityContext               struct {
				RunAsNonRoot *bool `yaml:"runAsNonRoot"`
			} `yaml:"securityContext"`
			Containers []container `yaml:"containers"`
			Volumes    []struct {
				Name      string `yaml:"name"`
				ConfigMap *struct {
					Name string `yaml:"name"`
				} `yaml:"configMap"`
			} `yaml:"volumes"`
		} `yaml:"spec"`
	} `yaml:"template"`
}

// TestDeployment checks the Deployment against the config it runs and the
// objects that refer to it.
func TestDeployment(t *testing.T) {
	objs := objects(t)
	cfg := loadConfig(t, objs)
	var d deploymentSpec
	decodeSpec(t, objs, "Deployment/apicall", &d)
	pod := d.Template.Spec
	if len(pod.Containers) != 1 {
		t.Fatalf("want 1 container, got %d", len(pod.Containers))
	}
	c := pod.Containers[0]

	// Labels and selectors.
	for k, v := range d.Selector.MatchLabels {
		if d.Template.Metadata.Labels[k] != v {
			t.Errorf("selector %s=%s does not match the pod labels", k, v)
		}
	}
	var svcSel struct {
		Selector map[string]string `yaml:"selector"`
	}
	decodeSpec(t, objs, "Service/apicall", &svcSel)
	var pdb struct {
		Selector struct {
			MatchLabels map[string]string `yaml:"matchLabels"`
		} `yaml:"selector"`
		MaxUnavailable int `yaml:"maxUnavailable"`
	}
	decodeSpec(t, objs, "PodDisruptionBudget/apicall", &pdb)
	if pdb.MaxUnavailable != 1 {
		t.Errorf("PodDisruptionBudget maxUnavailable %d, want 1", pdb.MaxUnavailable)
	}
	for key, sel := range map[string]map[string]string{
		"Service/apicall":             svcSel.Selector,
		"PodDisruptionBudget/apicall": pdb.Selector.MatchLabels,
	} {
		if len(sel) == 0 {
			t.Errorf("%s has no selector", key)
		}
		for k, v := range sel {
			if d.Template.Metadata.Labels[k] != v {
				t.Errorf("%s selector %s=%s does not match the pod labels", key, k, v)
			}
		}
	}

	// Graceful shutdown: the kubelet must not SIGKILL before apicall has
	// finished in-flight calls (shutdown_grace) and committed.
	grace := cfg.Dispatch.ShutdownGrace
	if grace == 0 {
		grace = 30 * time.Second
	}
	if tg := time.Duration(pod.TerminationGracePeriodSeconds) * time.Second; tg < grace+10*time.Second {
		t.Errorf("terminationGracePeriodSeconds %v, want >= dispatch.shutdown_grace %v + 10s for outcome writes and the commit", tg, grace)
	}

	// Admin port: config, container port, probes, annotations, Service and
	// the Dockerfile's EXPOSE agree.
	_, port, err := net.SplitHostPort(cfg.Admin.Listen)
	if err != nil {
		t.Fatalf("admin.listen %q: %v", cfg.Admin.Listen, err)
	}
	if host, _, _ := net.SplitHostPort(cfg.Admin.Listen); host != "0.0.0.0" && host != "" {
		t.Errorf("admin.listen %q is not reachable by probes and Prometheus", cfg.Admin.Listen)
	}
	portNames := map[string]string{}
	for _, p := range c.Ports {
		portNames[p.Name] = strconv.Itoa(p.ContainerPort)
	}
	resolve := func(n yaml.Node) string {
		if v, ok := portNames[n.Value]; ok {
			return v
		}
		return n.Value
	}
	for name, pr := range map[string]*probe{"liveness": c.LivenessProbe, "readiness": c.ReadinessProbe, "startup": c.StartupProbe} {
		if pr == nil {
			t.Errorf("no %s probe", name)
			continue
		}
		want := "/healthz"
		if name == "readiness" {
			want = "/readyz"
		}
		if pr.HTTPGet.Path != want || resolve(pr.HTTPGet.Port) != port {
			t.Errorf("%s probe GET %s on port %s, want %s on %s", name, pr.HTTPGet.Path, resolve(pr.HTTPGet.Port), want, port)
		}
	}
	if a := d.Template.Metadata.Annotations; a["prometheus.io/scrape"] != "true" || a["prometheus.io/port"] != port || a["prometheus.io/path"] != "/metrics" {
		t.Errorf("prometheus annotations %v, want scrape=true port=%s path=/metrics", a, port)
	}
	var svc struct {
		Type  string `yaml:"type"`
		Ports []struct {
			Port       int       `yaml:"port"`
			TargetPort yaml.Node `yaml:"targetPort"`
		} `yaml:"ports"`
	}
	decodeSpec(t, objs, "Service/apicall", &svc)
	if svc.Type != "ClusterIP" || len(svc.Ports) != 1 || strconv.Itoa(svc.Ports[0].Port) != port || resolve(svc.Ports[0].TargetPort) != port {
		t.Errorf("Service %+v, want ClusterIP port %s -> %s", svc, port, port)
	}
	dockerfile, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`(?m)^EXPOSE ` + port + `$`).Match(dockerfile) {
		t.Errorf("Dockerfile does not EXPOSE %s", port)
	}

	// Security.
	sc := c.SecurityContext
	if !isTrue(pod.SecurityContext.RunAsNonRoot) || !isTrue(sc.RunAsNonRoot) || !isTrue(sc.ReadOnlyRootFilesystem) ||
		sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation || !slices.Equal(sc.Capabilities.Drop, []string{"ALL"}) {
		t.Errorf("container securityContext %+v: want runAsNonRoot, readOnlyRootFilesystem, no privilege escalation, drop ALL", sc)
	}
	for _, r := range []string{"cpu", "memory"} {
		if c.Resources.Requests[r] == "" || c.Resources.Limits[r] == "" {
			t.Errorf("resources: %s request and limit are required", r)
		}
	}

	// Config file: mounted from the ConfigMap where --config points, and
	// the same path as the image's default CMD.
	var cfgPath string
	for i, a := range c.Args {
		if a == "--config" && i+1 < len(c.Args) {
			cfgPath = c.Args[i+1]
		}
	}
	if !bytes.Contains(dockerfile, []byte(`"--config", "`+cfgPath+`"`)) {
		t.Errorf("Dockerfile CMD does not use --config %s", cfgPath)
	}
	var mounted bool
	for _, m := range c.VolumeMounts {
		for _, v := range pod.Volumes {
			if v.Name == m.Name && v.ConfigMap != nil && v.ConfigMap.Name == "apicall-config" &&
				filepath.Join(m.MountPath, "config.yaml") == cfgPath {
				mounted = true
			}
		}
	}
	if !mounted {
		t.Errorf("--config %s is not config.yaml of ConfigMap apicall-config", cfgPath)
	}

	// Every ${VAR} of config.yaml comes from the Secret the pod loads.
	secret := object(t, objs, "Secret/apicall")
	var fromSecret bool
	for _, e := range c.EnvFrom {
		if e.SecretRef != nil && e.SecretRef.Name == secret.Metadata.Name {
			fromSecret = true
		}
	}
	if !fromSecret {
		t.Errorf("container has no envFrom secretRef %s", secret.Metadata.Name)
	}
	for _, m := range regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}`).FindAllStringSubmatch(configYAML(t, objs), -1) {
		if _, ok := secret.StringData[m[1]]; !ok {
			t.Errorf("config.yaml uses ${%s}, which is not a key of Secret %s", m[1], secret.Metadata.Name)
		}
	}
}

func isTrue(b *bool) bool { return b != nil && *b }

// TestKustomization: every resource exists and every manifest except the
// example Secret is listed.
func TestKustomization(t *testing.T) {
	var k struct {
		Resources []string `yaml:"resources"`
	}
	b, err := os.ReadFile(filepath.Join(k8sDir, "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &k); err != nil {
		t.Fatal(err)
	}
	for _, r := range k.Resources {
		if _, err := os.Stat(filepath.Join(k8sDir, r)); err != nil {
			t.Errorf("kustomization resource %s: %v", r, err)
		}
	}
	paths, _ := filepath.Glob(filepath.Join(k8sDir, "*.yaml"))
	for _, p := range paths {
		name := filepath.Base(p)
		if name == "kustomization.yaml" || name == "secret.yaml" {
			continue
		}
		if !slices.Contains(k.Resources, name) {
			t.Errorf("%s is not listed in kustomization.yaml", name)
		}
	}
	if slices.Contains(k.Resources, "secret.yaml") {
		t.Errorf("secret.yaml (placeholders) must not be applied by kustomize")
	}
}
