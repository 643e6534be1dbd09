package main_test

import (
	"bufio"
	"context"
	"encoding/base64"
	"fmt"
	stdhtml "html"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/contactcenter/presence-provider/client"
	"github.com/contactcenter/presence-provider/internal/freeport"
	"github.com/contactcenter/presence-provider/schemas"
)

// chromium finds the browser, or ends the test: skipped normally, failed
// under CI=true, where .ci/run installs it.
func chromium(t testing.TB) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if path, err := exec.LookPath(name); err == nil {
			return path
		}
	}
	msg := "chromium not found in PATH; install it with: apt-get install chromium"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg + " (CI=true: the status page test must run, not skip)")
	}
	t.Skip(msg)
	return ""
}

// screenshotDir is where the test keeps its screenshot:
// PRESENCE_SCREENSHOT_DIR (an absolute path; the docs' pictures are made
// with PRESENCE_SCREENSHOT_DIR=$PWD/docs/img), else the test's own folder.
func screenshotDir(t *testing.T) string {
	if dir := os.Getenv("PRESENCE_SCREENSHOT_DIR"); dir != "" {
		return dir
	}
	return t.TempDir()
}

// js is a script the page runs; it returns JSON-able values.
func js(script string, args ...any) string { return fmt.Sprintf(script, args...) }

// TestStatusPageInChromium loads the status page of a real presenced in a
// headless Chromium, and, without a reload: an attendant input changes the
// agent's row, a new subscription adds one, the filter box hides the rows
// that do not match, a URI and an activity carrying HTML show as text and
// run nothing, and a click on an agent opens its explanation.
func TestStatusPageInChromium(t *testing.T) {
	browser := chromium(t)
	presenced, _ := build(t)
	url, base := startPageDaemon(t, presenced, attendantConfig(t))
	ucc := natsClient(t, url)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	const (
		agent = "sip:agent1@attendant.example"
		later = "sip:agent7@attendant.example"
		// <>" are refused in URIs, ";" starts parameters; entities without
		// one are still markup: as HTML this reads <script>alert('x')&.
		hostile = "sip:&ltscript&gtalert('x')&amp@attendant.example"
		html    = `<img src=x onerror="document.title='xss'"><b>bold</b>`
	)
	agents := []string{agent, "sip:agent2@attendant.example", "sip:agent3@attendant.example",
		"sip:agent4@attendant.example", "sip:agent5@attendant.example", hostile, "tel:+31612345678", "sip:nobody@example.com"}
	subscribe := func(ucc *client.Client, name string, uris ...string) {
		t.Helper()
		var refs []schemas.AgentRef
		for _, u := range uris {
			refs = append(refs, schemas.AgentRef{URI: u})
		}
		if _, err := ucc.Subscribe(ctx, schemas.SubscribeRequest{UCC: name, Agents: refs}); err != nil {
			t.Fatal(err)
		}
	}
	input := func(uri, availability, activity string) {
		t.Helper()
		if rep, err := ucc.Attendant(ctx, schemas.Key(uri), schemas.AttendantInput{Availability: availability, Activity: activity}); err != nil || !rep.OK {
			t.Fatalf("attendant input for %s: %+v, %v", uri, rep, err)
		}
	}
	subscribe(ucc, "ucc_app01", agents...)
	subscribe(ucc, "ucc_app02", agents[:3]...)
	input("sip:agent2@attendant.example", "Available", "")
	input("sip:agent3@attendant.example", "Away", "Lunch")
	input("sip:agent4@attendant.example", "DoNotDisturb", "Presenting")
	input(hostile, "Busy", html)

	tab := newTab(t, ctx, browser)

	key := schemas.Key(agent)
	row := fmt.Sprintf(`tr[data-key="%s"]`, key)
	cell := func(key string, n int) string {
		return fmt.Sprintf(`document.querySelector('tr[data-key="%s"] td:nth-child(%d)')?.textContent`, key, n)
	}
	until := func(what, script string) chromedp.Action[chromedp.Void] {
		return func(ctx context.Context, tg *chromedp.Target) (chromedp.Void, error) {
			if _, err := chromedp.Poll[chromedp.Void](script, chromedp.WithPollingTimeout(30*time.Second))(ctx, tg); err != nil {
				// What the page shows then, for the failure's message.
				shows, _ := chromedp.Evaluate[string](`'filter ' + JSON.stringify(document.getElementById('filter').value) +
					', rows: ' + Array.from(document.querySelectorAll('#agents tbody tr')).map(tr => tr.innerText).join(' | ')`)(ctx, tg)
				return chromedp.Void{}, fmt.Errorf("waiting for %s: %w; the page shows %s", what, err, shows)
			}
			return chromedp.Void{}, nil
		}
	}
	do := func(steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(tab, steps...); err != nil {
			t.Fatal(err)
		}
	}
	eval := func(script string) any {
		t.Helper()
		v, err := chromedp.Run(tab, chromedp.Evaluate[any](script))
		if err != nil {
			t.Fatal(err)
		}
		return v
	}

	do(chromedp.Navigate(base),
		chromedp.WaitVisible(row),
		until("the sources and this worker shown", `document.querySelector('#sources tbody')?.textContent.includes('attendant') &&
			document.querySelector('#workers tbody')?.textContent.includes('live')`),
	)
	eval(`window.notReloaded = true`) // a reload would lose it
	if before := eval(cell(key, 2)); before != "none" {
		t.Fatalf("presence of %s before any input: %v; want none", agent, before)
	}

	input(agent, "Busy", "InACall")
	do(until("the row Busy, InACall", js(`%s === 'Busy (6500)' && %s === 'InACall'`, cell(key, 2), cell(key, 3))))
	subscribe(ucc, "ucc_app03", later)
	do(until("the agent subscribed after the load listed", js(`%s === %q`, cell(schemas.Key(later), 1), later)))
	if kept := eval(`window.notReloaded === true`); kept != true {
		t.Fatal("the page reloaded: it must change in place")
	}

	// Text, never markup: the URI and the activity read exactly as given,
	// and the table holds no element of theirs.
	hostileKey := schemas.Key(hostile)
	do(until("the hostile agent's row", js(`%s === %q && %s === %q`, cell(hostileKey, 1), hostile, cell(hostileKey, 3), html)))
	injected := eval(`document.querySelectorAll('#agents img, #agents b, #agents script').length`)
	if title := eval(`document.title`); injected != float64(0) || title == "xss" {
		t.Fatalf("the agents' data became markup: %v elements, title %v", injected, title)
	}

	// Emptied as a person would, with the input event a person's
	// keystrokes fire.
	clearFilter := chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := chromedp.Evaluate[bool](`(f => { f.value = ''; return f.dispatchEvent(new Event('input')) })(document.getElementById('filter'))`)(ctx, tg)
		return err
	})
	shown := `Array.from(document.querySelectorAll('#agents tbody tr')).map(tr => tr.dataset.key).join(',')`
	agent2 := schemas.Key("sip:agent2@attendant.example")
	do(chromedp.SendKeys("#filter", "agent2"),
		until("only agent2's row shown", js(`%s === %q`, shown, agent2)),
		chromedp.SendKeys("#filter", " available"),
		until("agent2 still shown: every word matches", js(`%s === %q`, shown, agent2)),
		clearFilter,
		chromedp.SendKeys("#filter", "busy"),
		until("the Busy agents shown", js(`%s.split(',').sort().join(',') === %q`, shown,
			strings.Join(sortedKeys(agent, hostile), ","))),
		clearFilter,
		until("every agent shown again", js(`%s.split(',').length === %d`, shown, len(agents)+1)),
	)

	do(until("the summary counts every agent", js(`document.getElementById('totals').textContent.startsWith('%d agents')`, len(agents)+1)))

	// The sources in words, the times in ISO 8601, nothing out of its panel
	// on a laptop's window or a phone's, long URIs and activities included.
	sources := eval(`document.querySelector('#sources tbody').textContent`).(string)
	if strings.ContainsAny(sources, "{}[]\"") || !strings.Contains(sources, "agents no enabled source serves") {
		t.Errorf("the sources panel is not in words: %q", sources)
	}
	since := eval(`document.querySelector('#workers tbody td:nth-child(4)').textContent`).(string)
	if !isoSecond.MatchString(since) {
		t.Errorf("the worker's start %q is not ISO 8601 in UTC", since)
	}
	checkLayout(t, tab)

	do(chromedp.EmulateViewport(1280, 720),
		chromedp.Click(row+" button.agent"),
		chromedp.WaitVisible("#explain"),
		until("the agent's explanation", js(`document.getElementById('explain-uri').textContent === %q &&
			document.getElementById('explain-body').textContent.includes('"uri": %q')`, agent, agent)),
	)
	checkLayout(t, tab) // the explain panel too
}

// isoSecond is a time as the page writes it.
var isoSecond = regexp.MustCompile(`^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$`)

// windows are the sizes the page must read well at: a laptop's browser
// window and a phone's.
var windows = []struct {
	name          string
	width, height int64
}{{"laptop", 1280, 720}, {"phone", 390, 844}}

// overflowing lists, as text, every element of the header, the panels and
// the explain panel (when open) that reaches beyond its panel, or whose content is wider than itself, and
// whether the page is wider than the window.
const overflowing = `(() => {
  const out = [];
  const name = (e) => e.tagName.toLowerCase() + (e.id ? '#' + e.id : '') + (e.className ? '.' + String(e.className).split(' ').join('.') : '');
  for (const panel of document.querySelectorAll('header, .panel, #agents-section, #explain')) {
    const p = panel.getBoundingClientRect();
    for (const e of panel.querySelectorAll('*')) {
      const r = e.getBoundingClientRect();
      if (r.width === 0 && r.height === 0) continue;
      if (r.left < p.left - 1 || r.right > p.right + 1) out.push(name(e) + ' reaches out of ' + name(panel) + ': ' + e.textContent.slice(0, 60));
      else if (e.clientWidth > 0 && e.scrollWidth > e.clientWidth + 1) out.push(name(e) + ' is cut off: ' + e.textContent.slice(0, 60));
    }
  }
  if (document.documentElement.scrollWidth > window.innerWidth + 1) out.push('the page is wider than the window: ' + document.documentElement.scrollWidth + 'px');
  return out;
})()`

// checkLayout sets each window size in turn and fails the test for every
// element out of its panel.
func checkLayout(t *testing.T, tab context.Context) {
	t.Helper()
	for _, w := range windows {
		// Reading the boxes lays the page out again for the new size.
		if err := chromedp.Do(tab, chromedp.EmulateViewport(w.width, w.height)); err != nil {
			t.Fatal(err)
		}
		bad, err := chromedp.Run(tab, chromedp.Evaluate[[]string](overflowing))
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range bad {
			t.Errorf("%s window %dx%d: %s", w.name, w.width, w.height, b)
		}
	}
}

// newTab opens a headless Chromium tab that ends with the test.
func newTab(t *testing.T, ctx context.Context, browser string) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(browser), chromedp.NoSandbox,
		chromedp.WindowSize(1280, 720))
	alloc, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	t.Cleanup(cancelAlloc)
	tab, cancelTab := chromedp.NewContext(alloc, chromedp.WithLogf(t.Logf))
	t.Cleanup(cancelTab)
	return tab
}

// TestStatusPagePictures draws the pictures of the README and
// docs/operating.md from a realistic first hour: the example Config.xml,
// two UCCs, agents in every availability, a PSTN call and an agent no
// enabled source serves. It checks the layout at both window sizes too,
// and presencectl explain.
func TestStatusPagePictures(t *testing.T) {
	browser := chromium(t)
	presenced, presencectl := build(t)
	url, base := startPageDaemon(t, presenced, "../../examples/Config.xml")
	ucc := natsClient(t, url)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	team := []string{"sip:anna.jansen@attendant.example", "sip:bram.devries@attendant.example", "sip:chloe.martin@attendant.example",
		"sip:daan.smit@attendant.example", "sip:eva.bakker@domain2.com", "sip:femke.visser@attendant.example",
		"tel:+31201234567", "tel:+31612345678", "sip:gijs.mulder@contoso.com"}
	for _, sub := range []struct {
		ucc    string
		agents []string
	}{{"ucc_app01", team}, {"ucc_app02", team[:4]}} {
		var refs []schemas.AgentRef
		for _, u := range sub.agents {
			refs = append(refs, schemas.AgentRef{URI: u})
		}
		if _, err := ucc.Subscribe(ctx, schemas.SubscribeRequest{UCC: sub.ucc, Agents: refs}); err != nil {
			t.Fatal(err)
		}
	}
	for _, in := range []struct{ uri, availability, activity string }{
		{team[0], "Available", ""}, {team[1], "Busy", "InACall"}, {team[2], "Away", "Lunch"},
		{team[3], "DoNotDisturb", "Presenting"}, {team[4], "BeRightBack", ""},
	} {
		if rep, err := ucc.Attendant(ctx, schemas.Key(in.uri), schemas.AttendantInput{Availability: in.availability, Activity: in.activity}); err != nil || !rep.OK {
			t.Fatalf("attendant input for %s: %+v, %v", in.uri, rep, err)
		}
	}
	if rep, err := ucc.PSTN(ctx, schemas.Key(team[6]), schemas.PSTNInput{UCC: "ucc_app01", CallID: "call-4711", State: schemas.CallConnected}); err != nil || !rep.OK {
		t.Fatalf("PSTN call: %+v, %v", rep, err)
	}

	tab := newTab(t, ctx, browser)
	drawn := chromedp.Poll[chromedp.Void](js(`document.getElementById('shown').textContent.includes('%d agents') &&
		document.querySelector('#sources tbody')?.textContent.includes('busy agents 1') &&
		document.querySelector('tr[data-key="%s"] td:nth-child(2)')?.textContent === 'Busy (6500)'`, len(team), schemas.Key(team[1])),
		chromedp.WithPollingTimeout(30*time.Second))
	if err := chromedp.Do(tab, chromedp.Navigate(base), drawn); err != nil {
		t.Fatalf("the page never showed the team: %v", err)
	}
	checkLayout(t, tab)

	dir := screenshotDir(t)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	shot := func(name string, width, height int64) {
		t.Helper()
		if err := chromedp.Do(tab, chromedp.EmulateViewport(width, height)); err != nil {
			t.Fatal(err)
		}
		png, err := chromedp.Run(tab, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatal(err)
		}
		file := filepath.Join(dir, name)
		if err := os.WriteFile(file, png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot: %s", file)
	}
	shot("status-page.png", 1280, 720)
	shot("status-page-phone.png", 390, 844)

	agent := team[1]
	if err := chromedp.Do(tab, chromedp.EmulateViewport(1280, 720),
		chromedp.Click(fmt.Sprintf(`tr[data-key="%s"] button.agent`, schemas.Key(agent))),
		chromedp.WaitVisible("#explain"),
		chromedp.Poll[chromedp.Void](js(`document.getElementById('explain-body').textContent.includes('"uri": %q')`, agent),
			chromedp.WithPollingTimeout(30*time.Second))); err != nil {
		t.Fatalf("the explain panel: %v", err)
	}
	shot("status-page-explain.png", 1280, 720)

	// presencectl explain, as an operator reads it in a terminal: the
	// picture of docs/operating.md.
	out, err := exec.Command(presencectl, "-nats", url, "explain", agent).CombinedOutput()
	if err != nil {
		t.Fatalf("presencectl explain: %v\n%s", err, out)
	}
	for _, want := range []string{agent, "attendant: pattern", "ucc_app01", "ucc_app02", "Busy"} {
		if !strings.Contains(string(out), want) {
			t.Fatalf("presencectl explain tells no %q:\n%s", want, out)
		}
	}
	terminal := `<body style="margin:0;background:#1d1f21"><pre style="margin:0;padding:16px;color:#e0e0e0;font:14px monospace;white-space:pre-wrap;overflow-wrap:anywhere">` +
		"$ presencectl explain " + agent + "\n" + stdhtml.EscapeString(string(out)) + "</pre></body>"
	if err := chromedp.Do(tab, chromedp.Navigate("data:text/html;base64,"+base64.StdEncoding.EncodeToString([]byte(terminal)))); err != nil {
		t.Fatal(err)
	}
	shot("presencectl-explain.png", 1000, 600)
}

// startPageDaemon runs presenced with the Config.xml given on an embedded
// NATS; it returns the NATS URL and the status page's address.
func startPageDaemon(tb testing.TB, presenced, config string) (url, page string) {
	tb.Helper()
	url = fmt.Sprintf("nats://127.0.0.1:%d", freeport.T(tb))
	d := startDaemon(tb, presenced, []string{
		"PRESENCE_CONFIG=" + config,
		"PRESENCE_EMBEDDED_LISTEN=" + strings.TrimPrefix(url, "nats://"),
		"PRESENCE_DATA_DIR=" + tb.TempDir(),
	})
	return url, "http://" + d.httpAddr(tb) + "/"
}

func sortedKeys(uris ...string) []string {
	var keys []string
	for _, u := range uris {
		keys = append(keys, schemas.Key(u))
	}
	slices.Sort(keys)
	return keys
}

// BenchmarkStatusPage measures the page of a real presenced with 10,000
// agents, each with a presence: the first load as the stream sends it
// (bytes), the time from navigating a headless Chromium to the table
// drawn, and the stream while inputs change random agents as fast as one
// UCC sends them (bytes and messages a second, against inputs a second).
//
//	go test -run '^$' -bench BenchmarkStatusPage -benchtime 5x ./cmd/presenced
func BenchmarkStatusPage(b *testing.B) {
	const n = 10_000
	browser := chromium(b)
	presenced, _ := build(b)
	url, base := startPageDaemon(b, presenced, attendantConfig(b))
	ucc := natsClient(b, url)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	var refs []schemas.AgentRef
	for i := range n {
		refs = append(refs, schemas.AgentRef{URI: fmt.Sprintf("sip:agent%05d@attendant.example", i)})
	}
	if _, err := ucc.Subscribe(ctx, schemas.SubscribeRequest{UCC: "ucc_app01", Agents: refs}); err != nil {
		b.Fatal(err)
	}
	availabilities := []string{"Available", "Busy", "Away", "DoNotDisturb"}
	input := func(i, round int) error {
		_, err := ucc.Attendant(ctx, schemas.Key(refs[i].URI),
			schemas.AttendantInput{Availability: availabilities[(i+round)%4], Activity: fmt.Sprintf("round %d", round)})
		return err
	}
	var wg sync.WaitGroup
	for w := range 16 {
		wg.Go(func() {
			for i := w; i < n; i += 16 {
				if err := input(i, 0); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()

	// The first load, as the stream sends it.
	loading := time.Now()
	resp, err := http.Get(base + "api/events")
	if err != nil {
		b.Fatal(err)
	}
	counted := &countingReader{r: resp.Body}
	events := bufio.NewScanner(counted)
	events.Buffer(nil, 64<<20)
	rows := 0
	for rows < n && events.Scan() {
		rows += strings.Count(events.Text(), `"key":`)
	}
	firstLoad, firstLoadMS := float64(counted.n.Load())/1024, float64(time.Since(loading).Milliseconds())

	// The stream while the agents change: bytes and messages a second.
	go func() {
		for events.Scan() {
			if strings.HasPrefix(events.Text(), "event: rows") {
				counted.messages.Add(1)
			}
		}
	}()
	before, start := counted.n.Load(), time.Now()
	var inputs atomic.Int64
	churn, stopChurn := context.WithTimeout(ctx, 3*time.Second)
	for w := range 16 {
		wg.Go(func() {
			for round := 1; churn.Err() == nil; round++ {
				if input((w*7919+round*104729)%n, round) == nil {
					inputs.Add(1)
				}
			}
		})
	}
	wg.Wait()
	stopChurn()
	secs := time.Since(start).Seconds()
	resp.Body.Close()
	metrics := map[string]float64{"first-load-KiB": firstLoad, "first-load-ms": firstLoadMS, "inputs/s": float64(inputs.Load()) / secs,
		"stream-KiB/s": float64(counted.n.Load()-before) / 1024 / secs, "stream-msgs/s": float64(counted.messages.Load()) / secs}

	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(browser), chromedp.NoSandbox,
		chromedp.WindowSize(1400, 900))
	alloc, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	defer cancelAlloc()
	tab, cancelTab := chromedp.NewContext(alloc)
	defer cancelTab()
	drawn := chromedp.Poll[chromedp.Void](fmt.Sprintf(`document.getElementById('shown').textContent.includes('%d agents')`, n),
		chromedp.WithPollingTimeout(time.Minute))
	for b.Loop() {
		if err := chromedp.Do(tab, chromedp.Navigate(base), chromedp.WaitReady("#shown"), chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
			_, err := drawn(ctx, t)
			return err
		})); err != nil {
			b.Fatal(err)
		}
	}
	for unit, v := range metrics {
		b.ReportMetric(v, unit)
	}
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r        io.Reader
	n        atomic.Int64
	messages atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}
