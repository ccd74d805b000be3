// Drive the live page in Debian's headless Chromium: open an account, pay, and wait until the
// page shows the payment's final status. Prints one JSON line; exits 0 when it saw `authorized`.
//
//   node live_page.mjs <gateway url> <api key> [timeout ms]
import { chromium } from 'playwright-core';

const [base, apiKey, timeoutArg] = process.argv.slice(2);
const timeout = Number(timeoutArg || 60000);
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';

const browser = await chromium.launch({
  executablePath,
  args: [
    '--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
    '--disable-component-update', '--disable-sync',
  ],
});
const result = { ok: false };
try {
  const page = await browser.newPage();
  const problems = [];
  page.on('pageerror', (error) => problems.push(String(error)));
  await page.goto(base, { waitUntil: 'domcontentloaded' });
  result.url = page.url();
  await page.fill('#api-key', apiKey);
  await page.click('#open-account');
  await page.waitForFunction(() => !document.getElementById('pay').disabled, null, { timeout });
  await page.waitForFunction(
    () => document.getElementById('live').textContent.includes('connected'), null, { timeout });
  await page.click('#pay');
  const finalCell = 'td.status[data-status=authorized], td.status[data-status=declined], ' +
    'td.status[data-status=failed]';
  await page.waitForSelector(finalCell, { timeout });
  result.status = (await page.textContent('td.status')).trim();
  result.history = (await page.textContent('td.history')).trim();
  result.payment_id = await page.getAttribute('tbody tr', 'data-payment-id');
  result.push = (await page.textContent('#push')).trim();
  result.page_errors = problems;
  result.ok = result.status === 'authorized';
} catch (error) {
  result.error = String(error);
} finally {
  await browser.close();
}
console.log(JSON.stringify(result));
process.exit(result.ok ? 0 : 1);
