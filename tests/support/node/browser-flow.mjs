#!/usr/bin/env node
// Drives headless Debian Chromium through nixtla's sign-in and sign-out pages.
//
// Steps: open `/`, click `#sign-in` and sign in. Dev mode fills the development login form,
// and oidc mode lets the test provider complete by itself. Then wait for `/nixtla`, read
// `#greeting`, take a screenshot, click `#sign-out`, and check that `/nixtla` redirects to
// `/login` again. It prints one JSON line with what it saw on stdout and exits 0 only
// when every step matched. Otherwise it exits 1 and explains the failure on stderr.

import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';

import { chromium } from 'playwright-core';

const DEFAULT_CHROMIUM = '/usr/bin/chromium';

// Chromium flags for a machine without internet access, run as root. Without the
// background-networking flags Chromium keeps trying to reach Google's hosts, and as root it
// needs --no-sandbox.
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

const USAGE = `usage: node browser-flow.mjs --base-url URL --mode oidc|dev [--name NAME --email EMAIL]
                            --expect-greeting TEXT --screenshot PATH [--timeout-ms MS]
  --base-url         the app's base URL, e.g. http://127.0.0.1:7000
  --mode             "dev" fills the development login form, "oidc" expects the provider
                     to complete the sign-in without input
  --name, --email    values typed into the development login form (dev mode only)
  --expect-greeting  exact text expected in #greeting on /nixtla
  --screenshot       PNG file written while signed in (parent folders are created)
  --timeout-ms       time limit for each step in milliseconds (default 20000)
Chromium: $NIXTLA_TEST_CHROMIUM, else ${DEFAULT_CHROMIUM}.
`;

class FlowError extends Error {}

const OPTIONS = {
  'base-url': { type: 'string' },
  mode: { type: 'string' },
  name: { type: 'string' },
  email: { type: 'string' },
  'expect-greeting': { type: 'string' },
  screenshot: { type: 'string' },
  'timeout-ms': { type: 'string', default: '20000' },
  help: { type: 'boolean', default: false },
};

function parseCommandLine(argv) {
  let values;
  try {
    ({ values } = parseArgs({ args: argv, options: OPTIONS, strict: true }));
  } catch (error) {
    throw new FlowError(`${error.message}\n${USAGE}`);
  }

  if (values.help) {
    process.stdout.write(USAGE);
    process.exit(0);
  }

  for (const required of ['base-url', 'mode', 'expect-greeting', 'screenshot']) {
    if (values[required] === undefined) {
      throw new FlowError(`missing --${required}\n${USAGE}`);
    }
  }
  if (!URL.canParse(values['base-url'])) {
    throw new FlowError(
      `invalid --base-url ${JSON.stringify(values['base-url'])}: expected an absolute URL`,
    );
  }
  if (values.mode !== 'dev' && values.mode !== 'oidc') {
    throw new FlowError(`invalid --mode ${JSON.stringify(values.mode)}: expected "dev" or "oidc"`);
  }
  if (values.mode === 'dev' && (values.name === undefined || values.email === undefined)) {
    throw new FlowError('missing --name or --email: dev mode types both into the login form');
  }
  const timeoutMs = Number(values['timeout-ms']);
  if (!Number.isInteger(timeoutMs) || timeoutMs <= 0) {
    throw new FlowError(
      `invalid --timeout-ms ${JSON.stringify(values['timeout-ms'])}: expected a positive integer`,
    );
  }

  return {
    baseUrl: new URL(values['base-url']),
    mode: values.mode,
    name: values.name,
    email: values.email,
    expectedGreeting: values['expect-greeting'],
    screenshotPath: resolve(values.screenshot),
    timeoutMs,
  };
}

function chromiumPath() {
  const path = process.env.NIXTLA_TEST_CHROMIUM || DEFAULT_CHROMIUM;
  if (!existsSync(path)) {
    throw new FlowError(
      `Chromium not found at ${path}: install it with "apt-get update && apt-get install -y chromium" ` +
        'or set NIXTLA_TEST_CHROMIUM to its path',
    );
  }
  return path;
}

// Origin and path only: callback URLs carry the authorization code in their query string.
function withoutQuery(url) {
  const parsed = new URL(url);
  if (parsed.origin === 'null') {
    return url;
  }
  return `${parsed.origin}${parsed.pathname}`;
}

async function signInWithDevForm(page, options, report) {
  await page.waitForURL((url) => url.pathname === '/login');
  report.login_url = withoutQuery(page.url());
  const banner = page.locator('#dev-login-banner');
  if (!(await banner.isVisible())) {
    throw new FlowError(`no visible #dev-login-banner on ${report.login_url}`);
  }
  await page.locator('input[name="name"]').fill(options.name);
  await page.locator('input[name="email"]').fill(options.email);
  await page.locator('#dev-sign-in').click();
}

function checkProviderVisited(options, report) {
  const providerPages = report.navigations.filter(
    (url) => new URL(url).origin !== options.baseUrl.origin,
  );
  if (providerPages.length === 0) {
    throw new FlowError(
      `oidc mode never left ${options.baseUrl.origin}: expected a redirect to the provider. ` +
        `Navigations: ${report.navigations.join(' -> ')}`,
    );
  }
  report.provider_urls = providerPages;
}

async function readGreeting(page, options, report) {
  await page.waitForURL(
    (url) => url.origin === options.baseUrl.origin && url.pathname === '/nixtla',
  );
  report.signed_in_url = withoutQuery(page.url());
  const greeting = page.locator('#greeting');
  await greeting.waitFor({ state: 'visible' });
  report.greeting = await greeting.textContent();
}

function checkGreeting(options, report) {
  if (report.greeting !== options.expectedGreeting) {
    throw new FlowError(
      `unexpected greeting ${JSON.stringify(report.greeting)}: expected ${JSON.stringify(options.expectedGreeting)}`,
    );
  }
}

async function saveScreenshot(page, options, report) {
  await mkdir(dirname(options.screenshotPath), { recursive: true });
  await page.screenshot({ path: options.screenshotPath, fullPage: true });
  report.screenshot = options.screenshotPath;
}

// Signs out and checks that /nixtla now redirects to /login. The check uses the browser
// context's cookies without following redirects, because in oidc mode following them would
// sign in again through the provider.
async function signOut(page, context, options, report) {
  await page.locator('#sign-out').click();
  await page.waitForURL((url) => url.pathname !== '/nixtla');
  report.signed_out_url = withoutQuery(page.url());

  const nixtlaUrl = new URL('/nixtla', options.baseUrl);
  const response = await context.request.get(nixtlaUrl.href, { maxRedirects: 0 });
  const location = response.headers().location ?? null;
  report.after_sign_out = { status: response.status(), location };

  const target = location === null ? null : new URL(location, nixtlaUrl);
  const redirectsToLogin =
    response.status() >= 300 &&
    response.status() < 400 &&
    target !== null &&
    target.origin === options.baseUrl.origin &&
    target.pathname === '/login';
  report.signed_out = redirectsToLogin;
  if (!redirectsToLogin) {
    throw new FlowError(
      `still signed in after #sign-out: GET /nixtla returned ${response.status()} with Location ${JSON.stringify(location)}. ` +
        'Expected a redirect to /login',
    );
  }
}

async function runFlow(context, options, report) {
  const page = context.pages()[0] ?? (await context.newPage());
  page.setDefaultTimeout(options.timeoutMs);
  // Navigation requests include every redirect hop, so the provider's URLs show up here even
  // though it only redirects and never renders a page.
  page.on('request', (request) => {
    if (request.isNavigationRequest() && request.frame() === page.mainFrame()) {
      report.navigations.push(withoutQuery(request.url()));
    }
  });

  await page.goto(new URL('/', options.baseUrl).href);
  report.start_url = withoutQuery(page.url());
  await page.locator('#sign-in').click();

  if (options.mode === 'dev') {
    await signInWithDevForm(page, options, report);
  }
  await readGreeting(page, options, report);
  // The screenshot comes before the checks, so a failed run still shows the page.
  await saveScreenshot(page, options, report);
  checkGreeting(options, report);
  if (options.mode === 'oidc') {
    checkProviderVisited(options, report);
  }
  await signOut(page, context, options, report);
}

async function main() {
  const options = parseCommandLine(process.argv.slice(2));
  const executablePath = chromiumPath();
  const report = { ok: false, mode: options.mode, base_url: options.baseUrl.href, navigations: [] };
  const userDataDir = await mkdtemp(join(tmpdir(), 'nixtla-chromium-'));

  let context;
  try {
    context = await chromium.launchPersistentContext(userDataDir, {
      executablePath,
      headless: true,
      args: CHROMIUM_ARGS,
      timeout: options.timeoutMs,
    });
    await runFlow(context, options, report);
    report.ok = true;
  } catch (error) {
    report.error = error.message;
    const currentUrl = context?.pages()[0]?.url();
    if (currentUrl !== undefined) {
      report.failed_at_url = withoutQuery(currentUrl);
      error.failedAtUrl = report.failed_at_url;
    }
    throw error;
  } finally {
    process.stdout.write(`${JSON.stringify(report)}\n`);
    await context?.close();
    await rm(userDataDir, { recursive: true, force: true });
  }
}

main().then(
  () => process.exit(0),
  (error) => {
    const detail = error instanceof FlowError ? error.message : (error?.stack ?? String(error));
    const location =
      error?.failedAtUrl === undefined ? '' : `\n(browser was on ${error.failedAtUrl})`;
    process.stderr.write(`browser-flow: FAILED: ${detail}${location}\n`);
    process.exit(1);
  },
);
