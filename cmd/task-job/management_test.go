package main

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/taskjob/task-job/api"
	"github.com/taskjob/task-job/task"
	"github.com/taskjob/task-job/test/observe"
	"github.com/taskjob/task-job/test/redisserver"
)

// proc is a task-job process started from this test binary.
type proc struct {
	cmd  *exec.Cmd
	log  *observe.Buffer
	done chan struct{}
}

func startProc(t *testing.T, args ...string) *proc {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: exec.Command(self, args...), log: &observe.Buffer{}, done: make(chan struct{})}
	p.cmd.Env = append(os.Environ(), mainEnv+"=1", "GORACE=atexit_sleep_ms=0")
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(15 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("log of %v:\n%s", args, p.log.String())
		}
	})
	return p
}

var urlInLog = regexp.MustCompile(`url=(https?://[^ /]+)/`)

// serverURL waits for the management server's start-up line and returns
// its base URL.
func (p *proc) serverURL(t *testing.T) string {
	t.Helper()
	var u string
	observe.Eventually(t, "the management server to listen", 30*time.Second, func() bool {
		select {
		case <-p.done:
			t.Fatalf("task-job exited:\n%s", p.log.String())
		default:
		}
		m := urlInLog.FindStringSubmatch(p.log.String())
		if m != nil {
			u = m[1]
		}
		return m != nil
	})
	return u
}

func freeTCPPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func writeJSONFile(t *testing.T, v any) string {
	t.Helper()
	b, _ := json.Marshal(v)
	path := filepath.Join(t.TempDir(), "config.json")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// httpDo sends one request with an optional bearer token.
func httpDo(t *testing.T, method, url, token, body string, hdr ...string) (int, string) {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, r)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

type sseEvent struct{ id, name, data string }

// readSSE reads events from url until the done event or the stream's end.
func readSSE(t *testing.T, url, token, lastID string, each func(sseEvent) bool) []sseEvent {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	client := &http.Client{Timeout: 30 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d", url, resp.StatusCode)
	}
	var out []sseEvent
	var ev sseEvent
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		l := sc.Text()
		switch {
		case l == "" && ev.name != "":
			out = append(out, ev)
			if ev.name == "done" || (each != nil && !each(ev)) {
				return out
			}
			ev = sseEvent{}
		case strings.HasPrefix(l, "id: "):
			ev.id = l[4:]
		case strings.HasPrefix(l, "event: "):
			ev.name = l[7:]
		case strings.HasPrefix(l, "data: "):
			ev.data = l[6:]
		}
	}
	return out
}

func waitTaskState(t *testing.T, base, token, id string, want task.State) map[string]any {
	t.Helper()
	var v map[string]any
	observe.Eventually(t, "task "+id+" "+string(want), 30*time.Second, func() bool {
		code, body := httpDo(t, "GET", base+"/api/v1/tasks/"+id, token, "")
		v = nil
		return code == 200 && json.Unmarshal([]byte(body), &v) == nil && v["state"] == string(want)
	})
	return v
}

// The metric names the README documents.
var documentedMetrics = []string{
	"taskjob_tasks_received_total", "taskjob_tasks_refused_total", "taskjob_tasks_finished_total",
	"taskjob_task_duration_seconds", "taskjob_task_wait_seconds", "taskjob_sandbox_setup_seconds",
	"taskjob_tasks_running", "taskjob_slots", "taskjob_oom_kills_total", "taskjob_output_dropped_bytes_total",
	"taskjob_audit_write_errors_total", "taskjob_queue_length", "taskjob_queue_oldest_age_seconds", "taskjob_build_info",
}

// An executor with server_port serves the API beside its tasks, on the real
// binary's path: listening beyond loopback only with tokens, where nothing
// works without one; a task submitted over HTTP runs to its done; its log
// stream resumes after Last-Event-ID; /metrics has every documented name;
// and `task-job server` serves the same deployment without running tasks.
func TestManagementServer(t *testing.T) {
	srv := redisserver.Start(t)
	dir := scripts(t)
	if err := os.WriteFile(filepath.Join(dir, "lines.sh"), []byte("#!/bin/sh\nfor i in 1 2 3 4 5; do echo \"line $i\"; done\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	readTok, readLine := api.NewToken("watcher", api.RoleRead)
	adminTok, adminLine := api.NewToken("ops", api.RoleAdmin)
	tokens := filepath.Join(tmp, "tokens")
	if err := os.WriteFile(tokens, []byte(readLine+"\n"+adminLine+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	id := fmt.Sprintf("mgmt-%d", os.Getpid())
	base := map[string]any{
		"redis_addr": srv.Addr(), "queue_name": "mq", "cmd_dir": dir, "executor_id": id,
		"isolation": "off", "logs": true, "spool_dir": filepath.Join(tmp, "spool"), "shutdown_grace": "2s",
		"audit_file": filepath.Join(tmp, "audit.log"),
	}
	port := freeTCPPort(t)

	// Beyond loopback without tokens: refused before anything starts.
	open := map[string]any{}
	for k, v := range base {
		open[k] = v
	}
	open["server_port"] = fmt.Sprintf(":%d", port)
	var out bytes.Buffer
	if code := run([]string{"-config=" + writeJSONFile(t, open)}, &out, &out); code != 1 || !strings.Contains(out.String(), "listens beyond loopback") {
		t.Fatalf("a public server_port without tokens: exit %d\n%s", code, out.String())
	}

	cfg := map[string]any{}
	for k, v := range base {
		cfg[k] = v
	}
	cfg["server_port"] = fmt.Sprintf("0.0.0.0:%d", port)
	cfg["server_tokens_file"] = tokens
	ex := startProc(t, "-config="+writeJSONFile(t, cfg))
	url := strings.Replace(ex.serverURL(t), "0.0.0.0", "127.0.0.1", 1)
	if !strings.Contains(ex.log.String(), "WITHOUT TLS") {
		t.Errorf("no warning about plain HTTP beyond loopback:\n%s", ex.log.String())
	}

	// Auth: nothing without a token, no write with a read token.
	for _, path := range []string{"/api/v1/tasks", "/api/v1/executors", "/metrics"} {
		if code, _ := httpDo(t, "GET", url+path, "", ""); code != http.StatusUnauthorized {
			t.Errorf("GET %s without a token = %d, want 401", path, code)
		}
		if code, _ := httpDo(t, "GET", url+path, "tj_wrong", ""); code != http.StatusUnauthorized {
			t.Errorf("GET %s with a wrong token = %d, want 401", path, code)
		}
	}
	if code, body := httpDo(t, "POST", url+"/api/v1/tasks", readTok, `{"id":"r1","task":{"cmdline":"hello.sh"}}`); code != http.StatusForbidden {
		t.Errorf("submit with a read token = %d %s, want 403", code, body)
	}
	if code, body := httpDo(t, "POST", url+"/api/v1/tasks", adminTok, `{"id":"r1","task":{"cmdline":"hello.sh"},"extra":1}`); code != http.StatusBadRequest {
		t.Errorf("submit with an unknown field = %d %s, want 400", code, body)
	}

	// Submit → done.
	code, body := httpDo(t, "POST", url+"/api/v1/tasks", adminTok, `{"id":"m1","type":"t","task":{"cmdline":"lines.sh"}}`)
	if code != http.StatusAccepted {
		t.Fatalf("submit: %d %s", code, body)
	}
	v := waitTaskState(t, url, readTok, "m1", task.Succeeded)
	if v["executor"] != id {
		t.Errorf("m1 = %v, want executor %s", v, id)
	}
	// Its log: all of it, then only what follows a Last-Event-ID.
	all := readSSE(t, url+"/api/v1/tasks/m1/logs", readTok, "", nil)
	var names []string
	for _, e := range all {
		names = append(names, e.id+":"+e.name)
	}
	if got := strings.Join(names, " "); got != "1:stdout 2:stdout 3:stdout 4:stdout 5:stdout 6:done" {
		t.Fatalf("m1's stream = %s", got)
	}
	resumed := readSSE(t, url+"/api/v1/tasks/m1/logs", readTok, "3", nil)
	if len(resumed) != 3 || resumed[0].id != "4" || !strings.Contains(resumed[0].data, `"data":"line 4"`) || resumed[2].name != "done" {
		t.Errorf("resumed after 3: %+v", resumed)
	}

	// Live: a running task's stream, cut after its first line and resumed;
	// a kill through the API ends it, and the resumed stream gets the done.
	if code, body := httpDo(t, "POST", url+"/api/v1/tasks", adminTok, `{"id":"m2","task":{"cmdline":"long.sh"}}`); code != http.StatusAccepted {
		t.Fatalf("submit m2: %d %s", code, body)
	}
	first := readSSE(t, url+"/api/v1/tasks/m2/logs", readTok, "", func(sseEvent) bool { return false })
	if len(first) != 1 || first[0].id != "1" || !strings.Contains(first[0].data, "begun") {
		t.Fatalf("m2's first event: %+v", first)
	}
	if code, body := httpDo(t, "POST", url+"/api/v1/tasks/m2/kill", readTok, ""); code != http.StatusForbidden {
		t.Errorf("kill with a read token = %d %s", code, body)
	}
	if code, body := httpDo(t, "POST", url+"/api/v1/tasks/m2/kill", adminTok, ""); code != http.StatusAccepted {
		t.Fatalf("kill m2: %d %s", code, body)
	}
	rest := readSSE(t, url+"/api/v1/tasks/m2/logs", readTok, "1", nil)
	if len(rest) != 1 || rest[0].name != "done" || rest[0].id != "2" || !strings.Contains(rest[0].data, `"status":"killed"`) {
		t.Errorf("m2 after 1: %+v", rest)
	}

	// The executor describes itself.
	code, body = httpDo(t, "GET", url+"/api/v1/executors", readTok, "")
	var exs struct{ Executors []api.ExecutorView }
	if code != 200 || json.Unmarshal([]byte(body), &exs) != nil || len(exs.Executors) != 1 ||
		exs.Executors[0].ID != id || !exs.Executors[0].Alive || exs.Executors[0].Slots < 1 || exs.Executors[0].Serves == "" {
		t.Errorf("executors: %d %s", code, body)
	}

	// /metrics: every documented name, and the tasks above counted.
	code, body = httpDo(t, "GET", url+"/metrics", readTok, "")
	if code != 200 {
		t.Fatalf("/metrics: %d", code)
	}
	for _, name := range documentedMetrics {
		if !strings.Contains(body, "# TYPE "+name+" ") {
			t.Errorf("/metrics lacks %s", name)
		}
	}
	for _, want := range []string{`taskjob_tasks_finished_total{status="succeeded",tube="default"} 1`,
		`taskjob_tasks_finished_total{status="killed",tube="default"} 1`, `taskjob_queue_length{queue="mq"} 0`} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if strings.Contains(body, "m1") || strings.Contains(body, "lines.sh") {
		t.Error("/metrics names a task id or a cmdline")
	}

	// The HTTP writes are audit records with the token's name.
	auditLog, _ := os.ReadFile(filepath.Join(tmp, "audit.log"))
	if !bytes.Contains(auditLog, []byte(`"by":"http:ops"`)) {
		t.Errorf("the audit log has no record by http:ops:\n%s", auditLog)
	}

	// task-job ps and executors: the same lists, read from Redis.
	cli := []string{"-redis_addr=" + srv.Addr(), "-queue=mq"}
	// Column widths follow the executor id (its pid) and the ages: the
	// golden files keep the cells, with two spaces between.
	agoRe, spaces := regexp.MustCompile(`[\d.]+(ms|s|m)? ago`), regexp.MustCompile(`  +`)
	for _, step := range []struct {
		name string
		args []string
	}{
		{"ps", []string{"ps"}},
		{"ps-killed", []string{"ps", "-state=killed"}},
		{"ps-bad-state", []string{"ps", "-state=done"}},
		{"ps-json", []string{"ps", "-json"}},
	} {
		var stdout, stderr bytes.Buffer
		args := append(step.args, cli...)
		code := run(args, &stdout, &stderr)
		out := agoRe.ReplaceAllString(strings.ReplaceAll(stdout.String(), id, "EXECUTOR"), "N ago")
		out = steadyJSON(spaces.ReplaceAllString(out, "  "))
		checkGolden(t, step.name, args, code, out, stderr.String(), srv.Addr(), "REDIS_ADDR", id, "EXECUTOR")
	}
	var stdout, stderr bytes.Buffer
	if code := run(append([]string{"executors"}, cli...), &stdout, &stderr); code != 0 {
		t.Fatalf("executors: exit %d %s", code, stderr.String())
	}
	host, _ := os.Hostname()
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "ID ") || !regexp.MustCompile(`^`+regexp.QuoteMeta(id)+` +yes +0/\d+ +`+regexp.QuoteMeta(host)+` +\d+ +dev +\d+s ago +\S+:\d+ +sandbox: OFF, process group per task$`).MatchString(lines[1]) {
		t.Errorf("executors:\n%s", stdout.String())
	}
	stdout.Reset()
	if code := run(append([]string{"executors", "-json"}, cli...), &stdout, &stderr); code != 0 || !strings.Contains(stdout.String(), `"id":"`+id+`","alive":true`) {
		t.Errorf("executors -json: %d %s", code, stdout.String())
	}

	// task-job server: the same deployment on loopback, running nothing.
	watch := map[string]any{
		"redis_addr": srv.Addr(), "queue_name": "mq", "executor_id": id + "-watch",
		"server_port": strconv.Itoa(freeTCPPort(t)),
	}
	sv := startProc(t, "server", "-config="+writeJSONFile(t, watch))
	surl := sv.serverURL(t)
	if !strings.HasPrefix(surl, "http://127.0.0.1:") || !strings.Contains(sv.log.String(), "loopback only, without tokens") {
		t.Errorf("the server without tokens listens at %s:\n%s", surl, sv.log.String())
	}
	code, body = httpDo(t, "GET", surl+"/api/v1/tasks", "", "")
	var list struct{ Tasks []map[string]any }
	if code != 200 || json.Unmarshal([]byte(body), &list) != nil || len(list.Tasks) != 2 || list.Tasks[0]["id"] != "m2" || list.Tasks[1]["id"] != "m1" {
		t.Errorf("the server's task list: %d %s", code, body)
	}
	code, body = httpDo(t, "GET", surl+"/metrics", "", "")
	if code != 200 || !strings.Contains(body, "taskjob_queue_length") || strings.Contains(body, "taskjob_tasks_running") {
		t.Errorf("the server's /metrics (%d) should have the queue figures and no executor counters:\n%.400s", code, body)
	}
	// It takes no task: one submitted through it waits for an executor.
	if code, body := httpDo(t, "POST", surl+"/api/v1/tasks", "", `{"id":"m3","task":{"cmdline":"hello.sh","cmd_args":["x"]}}`); code != http.StatusAccepted {
		t.Fatalf("submit through the server: %d %s", code, body)
	}
	if v := waitTaskState(t, url, readTok, "m3", task.Succeeded); v["executor"] != id {
		t.Errorf("m3 ran on %v, want the executor %s", v["executor"], id)
	}
}

// selfSignedCert writes a certificate for 127.0.0.1 and localhost, and its
// key, and returns their paths and a pool that trusts it.
func selfSignedCert(t *testing.T) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "task-job test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	kb, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile, pool
}

// With server_tls_cert and server_tls_key the management server speaks
// HTTPS only: its pages and API carry HSTS, the login cookie is Secure
// (as well as HttpOnly and SameSite=Strict), and plain HTTP to the port
// gets nothing of the API.
func TestManagementServerTLS(t *testing.T) {
	srv := redisserver.Start(t)
	certFile, keyFile, pool := selfSignedCert(t)
	tmp := t.TempDir()
	tok, line := api.NewToken("watcher", api.RoleRead)
	tokens := filepath.Join(tmp, "tokens")
	if err := os.WriteFile(tokens, []byte(line+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := map[string]any{
		"redis_addr": srv.Addr(), "queue_name": "tq", "executor_id": fmt.Sprintf("tls-%d", os.Getpid()),
		"server_port": fmt.Sprintf("127.0.0.1:%d", freeTCPPort(t)), "server_tokens_file": tokens,
		"server_tls_cert": certFile, "server_tls_key": keyFile,
	}
	sv := startProc(t, "server", "-config="+writeJSONFile(t, cfg))
	base := sv.serverURL(t)
	if !strings.HasPrefix(base, "https://127.0.0.1:") {
		t.Fatalf("the server with TLS files says it listens at %s:\n%s", base, sv.log.String())
	}
	if strings.Contains(sv.log.String(), "WITHOUT TLS") {
		t.Errorf("a TLS server warns about plain HTTP:\n%s", sv.log.String())
	}
	client := &http.Client{
		Timeout:       10 * time.Second,
		Transport:     &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	get := func(path string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest("GET", base+path, nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("GET %s over https: %v", path, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	for _, path := range []string{"/", "/api/v1/tasks", "/api/v1/queues"} {
		resp := get(path)
		if resp.StatusCode != 200 || resp.TLS == nil {
			t.Errorf("GET %s: %d, TLS %v", path, resp.StatusCode, resp.TLS != nil)
		}
		if h := resp.Header.Get("Strict-Transport-Security"); !strings.HasPrefix(h, "max-age=") || h == "max-age=0" {
			t.Errorf("GET %s: Strict-Transport-Security = %q, want a max-age", path, h)
		}
	}
	// The page's login sets the token cookie Secure, so a browser never
	// sends it over plain HTTP.
	resp, err := client.PostForm(base+"/login", url.Values{"token": {tok}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	var ck *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == "taskjob_token" {
			ck = c
		}
	}
	if ck == nil {
		t.Fatalf("login over https: %d and no token cookie", resp.StatusCode)
	}
	if resp.StatusCode != http.StatusSeeOther || !ck.Secure || !ck.HttpOnly || ck.SameSite != http.SameSiteStrictMode {
		t.Fatalf("login over https: %d, cookie Secure %v HttpOnly %v SameSite %v; want a Secure, HttpOnly, SameSite=Strict cookie",
			resp.StatusCode, ck.Secure, ck.HttpOnly, ck.SameSite)
	}
	if resp.Header.Get("Strict-Transport-Security") == "" {
		t.Error("the login answer has no Strict-Transport-Security")
	}
	// Logout clears it the same way.
	resp, err = client.PostForm(base+"/logout", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	for _, c := range resp.Cookies() {
		if c.Name == "taskjob_token" && (!c.Secure || c.MaxAge >= 0) {
			t.Errorf("logout cookie %+v", c)
		}
	}
	// Plain HTTP to the same port: refused, nothing of the API.
	code, body := httpDo(t, "GET", strings.Replace(base, "https://", "http://", 1)+"/api/v1/tasks", tok, "")
	if code != http.StatusBadRequest || strings.Contains(body, "tasks") {
		t.Errorf("plain HTTP to the TLS port: %d %q, want 400", code, body)
	}
	// A client that does not trust the certificate does not get through.
	if _, err := http.Get(base + "/api/v1/tasks"); err == nil {
		t.Error("an untrusted certificate was accepted")
	}
}
