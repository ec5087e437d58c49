// Drives a running JupyterLab in Debian's headless Chromium: opens a notebook, runs all its cells, and
// records what a person would see. Started by tests/test_browser.py, which starts JupyterLab first.
//
//   node jupyterlab_check.mjs --url http://127.0.0.1:PORT --token TOKEN --notebook quickstart.ipynb \
//        --out DIR [--job-cell N] [--mid-text TEXT] [--chromium /usr/bin/chromium] [--timeout-s 600]
//
// Writes DIR/browser-result.json and DIR/<notebook>.png, and prints the result as one JSON line:
//   cells:    per code cell, its final prompt and its outputs' MIME types and text
//   job:      for the job cell (--job-cell, a code-cell index), every distinct state its outputs went through
//             while the notebook ran, sampled every 50 ms in the page: the number of outputs, the first
//             output's text, and whether that output is still the same DOM element as when it appeared
//   stderr:   texts of outputs rendered as application/vnd.jupyter.stderr (errors and stderr streams)
//   midScreenshot: with --mid-text, DIR/job-cell-mid-run.png, the job cell once its output shows TEXT and
//             before it is done (a live dashboard mid-run)
// The checks themselves are in test_browser.py.

import { chromium } from 'playwright-core';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

function args() {
  const a = { chromium: '/usr/bin/chromium', timeoutS: 600, jobCell: -1 };
  const argv = process.argv.slice(2);
  for (let i = 0; i < argv.length; i += 2) {
    const key = argv[i].replace(/^--/, '').replace(/-([a-z])/g, (_, c) => c.toUpperCase());
    a[key] = argv[i + 1];
  }
  for (const k of ['url', 'token', 'notebook', 'out']) {
    if (!a[k]) throw new Error(`--${k} is required`);
  }
  a.timeoutS = Number(a.timeoutS);
  a.jobCell = Number(a.jobCell);
  return a;
}

const opts = args();
fs.mkdirSync(opts.out, { recursive: true });
const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'saekit-chromium-'));
const log = (...m) => console.error(`[${new Date().toISOString().slice(11, 23)}]`, ...m);

const context = await chromium.launchPersistentContext(profile, {
  executablePath: opts.chromium,
  headless: true,
  viewport: { width: 1400, height: 1000 },
  args: [
    '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync',
  ],
});
const result = { ok: false, notebook: opts.notebook, cells: [], job: null, stderr: [], console: [], steps: [] };
const step = (s) => { result.steps.push(s); log(s); };

try {
  const page = context.pages()[0] ?? (await context.newPage());
  page.on('console', (m) => { if (m.type() === 'error') result.console.push(m.text()); });
  page.setDefaultTimeout(60_000);

  step('open the notebook');
  await page.goto(`${opts.url}/lab/tree/${encodeURIComponent(opts.notebook)}?reset&token=${opts.token}`);
  await page.locator('.jp-NotebookPanel .jp-Notebook .jp-Cell').first().waitFor({ timeout: 120_000 });

  step('wait for the kernel');
  const kernelName = page.locator('.jp-NotebookPanel-toolbar .jp-KernelName, .jp-NotebookPanel-toolbar [data-jp-item-name="kernelName"]').first();
  await kernelName.waitFor();
  // The notebook's kernelspec starts by itself; a "Select Kernel" dialog means it was not found (accepting
  // it keeps the run going, and the kernel name reported below shows which kernel ran).
  const kernelDeadline = Date.now() + 180_000;
  for (;;) {
    const dialog = page.locator('.jp-Dialog');
    if (await dialog.count()) {
      result.dialogs = [...(result.dialogs ?? []), (await dialog.first().innerText()).slice(0, 300)];
      await dialog.locator('.jp-mod-accept').first().click();
    }
    const name = (await kernelName.innerText()).trim();
    const status = await page.locator('.jp-NotebookPanel-toolbar .jp-Notebook-ExecutionIndicator').first().getAttribute('data-status');
    if (name && !/^(No Kernel|Kernel)$/i.test(name) && status === 'idle') break;
    if (Date.now() > kernelDeadline) throw new Error(`the kernel did not become idle: name ${name}, status ${status}`);
    await page.waitForTimeout(250);
  }
  result.kernelName = (await kernelName.innerText()).trim();
  result.kernelReadyMs = Math.round(performance.now());

  step('watch the outputs');
  await page.evaluate((jobCell) => {
    const code = () => [...document.querySelectorAll('.jp-NotebookPanel .jp-Notebook .jp-Cell.jp-CodeCell')];
    window.__saekit = { states: [], started: performance.now() };
    let next = 1;
    const sample = () => {
      const cell = code()[jobCell];
      if (!cell) return;
      const outs = [...cell.querySelectorAll('.jp-OutputArea-child')];
      const first = outs[0];
      if (first && !first.dataset.saekitId) first.dataset.saekitId = String(next++);
      const state = {
        t: Math.round(performance.now() - window.__saekit.started),
        outputs: outs.length,
        element: first ? first.dataset.saekitId : null,
        text: first ? first.innerText.trim() : '',
      };
      const last = window.__saekit.states.at(-1);
      if (!last || last.outputs !== state.outputs || last.element !== state.element || last.text !== state.text) {
        window.__saekit.states.push(state);
      }
    };
    window.__saekit.timer = setInterval(sample, 50);
  }, opts.jobCell);

  step('run all cells');
  await page.locator('.lm-MenuBar-itemLabel', { hasText: /^Run$/ }).click();
  await page.locator('.lm-Menu-itemLabel', { hasText: /^Run All Cells$/ }).click();

  if (opts.midText && opts.jobCell >= 0) {
    // A picture of the job cell while it runs: once its output shows --mid-text and is not done yet.
    step('screenshot the job cell mid-run');
    const cell = page.locator('.jp-NotebookPanel .jp-Notebook .jp-Cell.jp-CodeCell').nth(opts.jobCell);
    const deadline = Date.now() + opts.timeoutS * 1000;
    while (Date.now() < deadline) {
      const text = await cell.locator('.jp-OutputArea-child').first().innerText().catch(() => '');
      if (text.includes(opts.midText) && !text.includes('done in')) {
        await page.waitForTimeout(1500);
        await cell.scrollIntoViewIfNeeded();
        result.midScreenshot = path.join(opts.out, 'job-cell-mid-run.png');
        await cell.screenshot({ path: result.midScreenshot });
        break;
      }
      if (text.includes('done in')) break;
      await page.waitForTimeout(100);
    }
  }

  step('wait for every cell to finish');
  await page.waitForFunction(
    () => {
      const prompts = [...document.querySelectorAll('.jp-NotebookPanel .jp-CodeCell .jp-InputArea-prompt')]
        .map((p) => p.innerText.trim());
      const indicator = document.querySelector('.jp-NotebookPanel-toolbar .jp-Notebook-ExecutionIndicator');
      return prompts.length > 0 && prompts.every((p) => /^\[\d+\]:$/.test(p)) && indicator?.getAttribute('data-status') === 'idle';
    },
    null,
    { timeout: opts.timeoutS * 1000, polling: 250 },
  );
  await page.waitForTimeout(1500); // a last display update may still be on its way

  result.job = await page.evaluate(() => {
    clearInterval(window.__saekit.timer);
    return window.__saekit.states;
  });
  result.cells = await page.evaluate(() =>
    [...document.querySelectorAll('.jp-NotebookPanel .jp-Notebook .jp-Cell.jp-CodeCell')].map((cell) => ({
      prompt: cell.querySelector('.jp-InputArea-prompt')?.innerText.trim(),
      outputs: [...cell.querySelectorAll('.jp-OutputArea-child .jp-OutputArea-output')].map((o) => ({
        mime: o.getAttribute('data-mime-type'),
        text: o.innerText.trim().slice(0, 300),
      })),
    })),
  );
  result.stderr = result.cells.flatMap((c) => c.outputs.filter((o) => o.mime === 'application/vnd.jupyter.stderr').map((o) => o.text));

  step('save the notebook');
  await page.keyboard.press('Escape'); // command mode; Ctrl+S saves from anywhere in the notebook
  await page.keyboard.press('Control+s');
  await page.waitForFunction(
    () => !document.querySelector('.jp-NotebookPanel .jp-mod-dirty, .lm-TabBar-tab.jp-mod-current.jp-mod-dirty'),
    null,
    { timeout: 30_000 },
  );

  step('screenshot');
  result.screenshot = path.join(opts.out, `${path.basename(opts.notebook, '.ipynb')}.png`);
  await page.screenshot({ path: result.screenshot, fullPage: true });
  if (result.job && opts.jobCell >= 0) {
    const cell = page.locator('.jp-NotebookPanel .jp-Notebook .jp-Cell.jp-CodeCell').nth(opts.jobCell);
    await cell.scrollIntoViewIfNeeded();
    result.jobScreenshot = path.join(opts.out, 'job-cell.png');
    await cell.screenshot({ path: result.jobScreenshot });
  }
  result.ok = true;
} catch (e) {
  result.error = String(e && e.stack ? e.stack : e);
  try {
    const page = context.pages()[0];
    result.screenshot = path.join(opts.out, 'failure.png');
    await page.screenshot({ path: result.screenshot, fullPage: true });
  } catch {}
} finally {
  await context.close();
  fs.rmSync(profile, { recursive: true, force: true });
}

fs.writeFileSync(path.join(opts.out, 'browser-result.json'), JSON.stringify(result, null, 2));
console.log(JSON.stringify(result));
process.exit(result.ok ? 0 : 1);
