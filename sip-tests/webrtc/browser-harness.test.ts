/**
 * The browser webphone harness itself (sip-tests/harness/browser.ts), without an edge:
 * chromium starts headless, the page loads JsSIP, idle phones report empty state and zero
 * media, and waits are bounded (a registration nobody answers fails within the timeout).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../harness/index.js';
import { startBrowser, type WebphoneBrowser } from '../harness/browser.js';

describe('browser webphone harness', () => {
  let browser: WebphoneBrowser;

  beforeAll(async () => {
    browser = await startBrowser({ operationTimeoutMs: 3_000 });
  }, 60_000);

  afterAll(async () => {
    await browser?.close();
  });

  it('serves the page on 127.0.0.1 and loads JsSIP into it', async () => {
    expect(browser.pageUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/$/);
    const phone = await browser.newWebphone();
    const state = await phone.state();
    expect(state).toEqual({ registration: 'none', registrationError: null, transport: 'disconnected', sessions: [] });
    const stats = await phone.mediaStats();
    expect(stats.audioPacketsSent).toBe(0);
    expect(stats.audioPacketsReceived).toBe(0);
    expect(await phone.lastSipMessages()).toEqual([]);
    await phone.close();
  });

  it('a registration nobody answers fails within the operation timeout', async () => {
    const phone = await browser.newWebphone();
    const closedPort = await freePort(); // nothing listens there
    const started = Date.now();
    await expect(phone.register({ wsUrl: `ws://127.0.0.1:${closedPort}`, sipUri: 'sip:nobody@127.0.0.1', password: 'x' })).rejects.toThrow(/timed out|failed/);
    expect(Date.now() - started).toBeLessThan(10_000);
    await phone.close();
  });

  it('refuses to place a call before registering', async () => {
    const phone = await browser.newWebphone();
    await expect(phone.call('sip:echo@127.0.0.1')).rejects.toThrow(/not registered/);
    await phone.close();
  });
});
