// Opens one trace in Debian's headless Chromium and prints JSON lines: time
// to first rows drawn, time until interactive, bytes transferred, and the
// worst frame while scrolling the Gantt from top to bottom. A benchmark, not
// a test: nothing here passes or fails. Run through scripts/bench-ui.
//
// Environment: CHAINTRACE_URL, CHAINTRACE_NODE_MODULES, TRACE_ID, RUNS.

import { createRequire } from 'node:module';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

const base = process.env.CHAINTRACE_URL;
const traceId = process.env.TRACE_ID;
const runs = Number(process.env.RUNS || 3);
const require = createRequire(path.join(process.env.CHAINTRACE_NODE_MODULES, 'x.js'));
const { chromium } = require('playwright-core');
const emit = (o) => console.log(JSON.stringify(o));

try {
  for (let run = 1; run <= runs; run++) {
    // A fresh, empty profile each run: nothing cached.
    const profile = mkdtempSync(path.join(tmpdir(), 'chaintrace-bench-'));
    const context = await chromium.launchPersistentContext(profile, {
      executablePath: '/usr/bin/chromium',
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
        '--disable-background-networking', '--disable-component-update', '--disable-sync'],
      viewport: { width: 1600, height: 1000 },
    });
    const page = await context.newPage();
    await page.goto(`${base}/trace/${traceId}`);
    await page.waitForSelector('body[data-ready="true"]', { timeout: 120000 });
    const load = await page.evaluate(() => {
      const mark = (n) => performance.getEntriesByName(n)[0]?.startTime ?? null;
      const nav = performance.getEntriesByType('navigation')[0];
      const res = performance.getEntriesByType('resource');
      const bytes = (nav ? nav.transferSize : 0) + res.reduce((s, r) => s + r.transferSize, 0);
      const decoded = (nav ? nav.decodedBodySize : 0) + res.reduce((s, r) => s + r.decodedBodySize, 0);
      const gantt = res.find((r) => r.name.endsWith('/gantt'));
      const ms = (x) => (x == null ? null : Math.round(x * 10) / 10);
      return {
        // When the page asked for the Gantt, when the server's first byte
        // came (its work), and when the body was in (the transfer).
        gantt_request_start_ms: ms(gantt?.requestStart),
        gantt_first_byte_ms: ms(gantt?.responseStart),
        gantt_response_end_ms: ms(gantt?.responseEnd),
        // The server's own account (Server-Timing): store read, analysis,
        // JSON writing.
        gantt_server_ms: Object.fromEntries((gantt?.serverTiming ?? []).map((t) => [t.name, ms(t.duration)])),
        gantt_loaded_ms: mark('chaintrace:gantt-loaded'),
        rows_built_ms: mark('chaintrace:rows-built'),
        first_rows_ms: mark('chaintrace:first-rows'),
        interactive_ms: mark('chaintrace:interactive'),
        bytes_transferred: bytes,
        bytes_decoded: decoded,
        rows: document.querySelector('#row-count')?.textContent,
      };
    });
    emit({ bench: 'ui_trace_open', run, trace_id: traceId, ...load });
    // Unfold everything, so the scroll below crosses every row.
    const expand = await page.evaluate(() => new Promise((done) => {
      const t = performance.now();
      document.getElementById('expand-all').click();
      requestAnimationFrame(() => done({
        expand_all_ms: Math.round((performance.now() - t) * 10) / 10,
        rows: document.querySelector('#row-count')?.textContent,
      }));
    }));
    emit({ bench: 'ui_expand_all', run, ...expand });
    // Scroll end to end in 300 steps, one per frame, timing every frame.
    const scroll = await page.evaluate(() => new Promise((done) => {
      const g = document.getElementById('gantt');
      const steps = 300;
      const stepPx = (g.scrollHeight - g.clientHeight) / steps;
      const frames = [];
      // Long animation frames (over 50 ms) with the script share of each.
      const long = [];
      const observer = typeof PerformanceObserver !== 'undefined' && PerformanceObserver.supportedEntryTypes.includes('long-animation-frame')
        ? new PerformanceObserver((list) => {
          for (const e of list.getEntries()) {
            long.push({ ms: Math.round(e.duration), script_ms: Math.round(e.scripts.reduce((t, x) => t + x.duration, 0)), style_layout_ms: Math.round(e.startTime + e.duration - e.styleAndLayoutStart) });
          }
        })
        : null;
      if (observer) observer.observe({ type: 'long-animation-frame' });
      let last = performance.now();
      let i = 0;
      const tick = (now) => {
        frames.push(now - last);
        last = now;
        if (i++ >= steps) {
          frames.shift();
          if (observer) observer.disconnect();
          frames.sort((a, b) => a - b);
          done({
            frames: frames.length,
            worst_frame_ms: Math.round(frames[frames.length - 1] * 10) / 10,
            p95_frame_ms: Math.round(frames[Math.floor(frames.length * 0.95)] * 10) / 10,
            scroll_px: g.scrollTop,
            rows_in_dom: document.querySelectorAll('.row:not([hidden])').length,
            long_frames: long.length,
            worst_long_frame: long.sort((a, b) => b.ms - a.ms)[0] ?? null,
          });
          return;
        }
        g.scrollTop = Math.round(i * stepPx);
        requestAnimationFrame(tick);
      };
      requestAnimationFrame(tick);
    }));
    emit({ bench: 'ui_scroll_end_to_end', run, ...scroll });
    await context.close();
    rmSync(profile, { recursive: true, force: true });
  }
} finally {
  /* each run closed its own browser */
}
