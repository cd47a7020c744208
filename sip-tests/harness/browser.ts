/**
 * A real browser webphone for integration tests: Debian's chromium, headless, driven by
 * playwright-core (never a downloaded browser), with fake media devices, running JsSIP
 * (RFC 7118 SIP over WebSocket + WebRTC) in a page this harness serves on 127.0.0.1.
 *
 *   const browser = await startBrowser();
 *   const phone = await browser.newWebphone();
 *   await phone.register({ wsUrl: 'wss://127.0.0.1:8443', sipUri: 'sip:alice@example.com', password: 'x' });
 *   const call = await phone.call('sip:echo@example.com');          // resolves once confirmed
 *   await phone.waitForMedia({ minPacketsSent: 50, minPacketsReceived: 50 });
 *   await phone.hangup();
 *   phone.receivedSipMessages();                                     // every SIP message the phone got
 *   await browser.close();                                           // in afterAll
 *
 * JsSIP ships no browser bundle in its npm package (only CommonJS lib/), so the page's
 * /jssip.js is bundled from node_modules/jssip/lib/JsSIP.js with esbuild (already installed
 * with tsx) once per process. The page logic is sip-tests/fixtures/webphone/webphone.js.
 *
 * Every wait is bounded; a phone's SIP trace and the page console are kept (bounded) for
 * failure messages.
 */
import { createServer, type Server } from 'node:http';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { chromium, type BrowserContext, type Page } from 'playwright-core';

const HOST = '127.0.0.1';
const CHROMIUM = '/usr/bin/chromium';
const ASSET_DIR = fileURLToPath(new URL('../fixtures/webphone/', import.meta.url));
const MAX_CONSOLE_LINES = 400;

/** Chromium flags (shared/reference/media-and-test-peers.md); headless and user-data-dir are set by playwright's own options. */
const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--use-fake-device-for-media-stream',
  '--use-fake-ui-for-media-stream',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
  // the edge's WSS listener uses a throw-away self-signed certificate
  '--ignore-certificate-errors',
];

export interface BrowserOptions {
  /** Bound on chromium start-up. Default 30 s. */
  launchTimeoutMs?: number;
  /** Default bound for every webphone operation. Default 10 s. */
  operationTimeoutMs?: number;
}

export interface RegisterOptions {
  /** `wss://127.0.0.1:port` (or ws://) of the edge's WebSocket listener. */
  wsUrl: string;
  /** AOR, e.g. `sip:alice@example.com`. */
  sipUri: string;
  password: string;
  displayName?: string;
  /** Digest username when it differs from the AOR's user part. */
  authorizationUser?: string;
  /** REGISTER Expires. Default 300. */
  expires?: number;
  /** Answer every incoming call at once (one call at a time; a second call gets 486). */
  autoAnswer?: boolean;
  /**
   * Audio codecs (rtpmap names, e.g. ['opus', 'telephone-event']) this phone puts in the SDP it
   * sends, offers and answers alike; default chromium's own list (opus, G.711, ...).
   */
  codecs?: string[];
}

export interface CallOptions {
  /** Digits sent as RFC 4733 events once the call is up. */
  dtmf?: string;
  /** Extra header lines for the INVITE, e.g. ['X-Test: 1']. */
  extraHeaders?: string[];
  /** Audio codecs offered in this call (overrides RegisterOptions.codecs). */
  codecs?: string[];
  /** Bound on the call being answered. Default the operation timeout. */
  timeoutMs?: number;
}

export type CallStatus = 'new' | 'ringing' | 'progress' | 'accepted' | 'confirmed' | 'ended' | 'failed';

/** A call as the page sees it (JsSIP RTCSession). */
export interface CallInfo {
  /** JsSIP session id (Call-ID + local tag). */
  id: string;
  /** SIP Call-ID of the call's INVITE */
  callId: string | null;
  direction: 'incoming' | 'outgoing';
  status: CallStatus;
  /** JsSIP's end/failure cause (e.g. 'Terminated', 'Busy', 'Rejected', 'BYE'). */
  cause: string | null;
  /** Who ended it: 'local' | 'remote' | 'system'. */
  endedBy: string | null;
  /** SIP status of a failed outgoing call, when a response caused it. */
  failureStatus?: number | null;
  remoteUri: string | null;
  remoteDisplayName: string | null;
  localUri: string | null;
  dtmfSent: string[];
  dtmfReceived: string[];
}

export interface MediaStats {
  /** outbound-rtp, kind audio */
  audioPacketsSent: number;
  audioBytesSent: number;
  /** inbound-rtp, kind audio */
  audioPacketsReceived: number;
  audioBytesReceived: number;
  audioPacketsLost: number;
  /** inbound totalAudioEnergy: > 0 when what arrived decodes to sound */
  totalAudioEnergy: number;
  /** negotiated send codec, e.g. 'audio/opus' */
  codec: string | null;
  iceState: string | null;
  dtlsState: string | null;
}

export interface SipTraceEntry {
  direction: 'sent' | 'received';
  /** ms since the epoch, page clock */
  at: number;
  text: string;
}

interface PageState {
  registration: 'none' | 'registering' | 'registered' | 'failed' | 'unregistered';
  registrationError: string | null;
  transport: 'connecting' | 'connected' | 'disconnected';
  sessions: CallInfo[];
}

let jssipBundle: Promise<string> | undefined;

/** JsSIP as one browser script (global `JsSIP`), bundled from the npm package's CommonJS lib. */
function bundleJssip(): Promise<string> {
  jssipBundle ??= (async () => {
    const require = createRequire(import.meta.url);
    const entry = require.resolve('jssip/lib/JsSIP.js');
    if (!existsSync(entry)) throw new Error(`jssip not installed: ${entry} missing`);
    const esbuild = await import('esbuild');
    const result = await esbuild.build({
      entryPoints: [entry],
      bundle: true,
      format: 'iife',
      globalName: 'JsSIP',
      platform: 'browser',
      target: 'chrome120',
      write: false,
      logLevel: 'silent',
    });
    const output = result.outputFiles[0];
    if (!output) throw new Error('esbuild produced no JsSIP bundle');
    return output.text;
  })();
  return jssipBundle;
}

async function serveWebphonePage(): Promise<{ server: Server; url: string }> {
  const assets: Record<string, { type: string; body: string }> = {
    '/': { type: 'text/html; charset=utf-8', body: readFileSync(join(ASSET_DIR, 'index.html'), 'utf8') },
    '/webphone.js': { type: 'text/javascript; charset=utf-8', body: readFileSync(join(ASSET_DIR, 'webphone.js'), 'utf8') },
    '/jssip.js': { type: 'text/javascript; charset=utf-8', body: await bundleJssip() },
  };
  const server = createServer((req, res) => {
    const asset = req.method === 'GET' ? assets[(req.url ?? '/').split('?')[0] ?? '/'] : undefined;
    if (!asset) {
      res.writeHead(req.url === '/favicon.ico' ? 204 : 404).end();
      return;
    }
    res.writeHead(200, { 'content-type': asset.type, 'cache-control': 'no-store' }).end(asset.body);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, HOST, () => resolve());
  });
  const address = server.address();
  if (typeof address !== 'object' || address === null) throw new Error('webphone page server has no address');
  // http://127.0.0.1 is a secure context: getUserMedia and WebRTC are allowed
  return { server, url: `http://${HOST}:${address.port}/` };
}

function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`webphone: timed out after ${ms} ms: ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

export interface WebphoneBrowser {
  /** URL of the served webphone page. */
  readonly pageUrl: string;
  /** A new page with its own JsSIP user agent. */
  newWebphone(name?: string): Promise<Webphone>;
  close(): Promise<void>;
}

/** Launches chromium and serves the webphone page. Close it in afterAll. */
export async function startBrowser(options: BrowserOptions = {}): Promise<WebphoneBrowser> {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} not found (Debian package chromium)`);
  const operationTimeoutMs = options.operationTimeoutMs ?? 10_000;
  const { server, url } = await serveWebphonePage();
  const userDataDir = mkdtempSync(join(tmpdir(), 'dialcore-chromium-'));
  let context: BrowserContext;
  try {
    context = await chromium.launchPersistentContext(userDataDir, {
      executablePath: CHROMIUM,
      headless: true,
      args: CHROMIUM_ARGS,
      ignoreHTTPSErrors: true,
      timeout: options.launchTimeoutMs ?? 30_000,
    });
  } catch (err) {
    server.close();
    rmSync(userDataDir, { recursive: true, force: true });
    throw err;
  }
  const phones: Webphone[] = [];
  let closed = false;
  return {
    pageUrl: url,
    async newWebphone(name = `phone${phones.length + 1}`) {
      if (closed) throw new Error('browser closed');
      const page = await context.newPage();
      const phone = new Webphone(name, page, operationTimeoutMs);
      phones.push(phone);
      await phone.open(url);
      return phone;
    },
    async close() {
      if (closed) return;
      closed = true;
      await Promise.allSettled(phones.map((p) => p.close()));
      await withTimeout(context.close(), 10_000, 'closing chromium').catch(() => undefined);
      await new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeAllConnections();
      rmSync(userDataDir, { recursive: true, force: true });
    },
  };
}

/** One JsSIP webphone in its own page. */
export class Webphone {
  private readonly consoleLines: string[] = [];
  private readonly seenIncoming = new Set<string>();
  private closed = false;

  constructor(
    readonly name: string,
    private readonly page: Page,
    private readonly timeoutMs: number,
  ) {
    page.on('console', (message) => this.note(`console.${message.type()}: ${message.text()}`));
    page.on('pageerror', (error) => this.note(`pageerror: ${error.message}`));
  }

  /** Loads the page; resolves when window.webphone exists. */
  async open(url: string): Promise<void> {
    await this.page.goto(url, { timeout: this.timeoutMs });
    await this.page.waitForFunction('window.webphoneReady === true', undefined, { timeout: this.timeoutMs });
  }

  /** Registers over WebSocket; resolves once a 2xx to REGISTER arrived, rejects on failure. */
  async register(options: RegisterOptions): Promise<void> {
    await this.invoke('register', options);
    await this.waitForState((s) => s.registration === 'registered' || s.registration === 'failed', 'registration');
    const state = await this.state();
    if (state.registration !== 'registered') throw new Error(`${this.name}: registration failed: ${state.registrationError ?? 'unknown'}`);
  }

  /** REGISTER with Expires 0 for this phone's contact; resolves once unregistered. */
  async unregister(): Promise<void> {
    await this.invoke('unregister');
    await this.waitForState((s) => s.registration === 'unregistered' || s.transport === 'disconnected', 'unregistration');
  }

  /** Stops the user agent (ends a call, closes the WebSocket). */
  async stop(): Promise<void> {
    await this.invoke('stop');
  }

  /**
   * Calls `target`; resolves with the call once confirmed (2xx + ACK), rejects with the SIP
   * status when it fails. `dtmf` digits are sent (RFC 4733) once the call is up.
   */
  async call(target: string, options: CallOptions = {}): Promise<CallInfo> {
    const id = await this.invoke<string>('call', target, { extraHeaders: options.extraHeaders ?? [], codecs: options.codecs });
    const call = await this.waitForCall((c) => c.id === id && (c.status === 'confirmed' || c.status === 'ended' || c.status === 'failed'), `call to ${target} answered`, options.timeoutMs);
    if (call.status !== 'confirmed') {
      throw Object.assign(new Error(`${this.name}: call to ${target} ${call.status}: ${call.cause ?? ''} ${call.failureStatus ?? ''}`.trim()), { call });
    }
    if (options.dtmf) await this.sendDtmf(options.dtmf);
    return call;
  }

  /** Resolves with the next incoming call not returned before (ringing, or already answered with autoAnswer). */
  async waitForIncoming(timeoutMs?: number): Promise<CallInfo> {
    const call = await this.waitForCall((c) => c.direction === 'incoming' && !this.seenIncoming.has(c.id), 'an incoming call', timeoutMs);
    this.seenIncoming.add(call.id);
    return call;
  }

  /** Answers the ringing incoming call; resolves once confirmed (ACK received). */
  async answer(): Promise<CallInfo> {
    await this.invoke('answer');
    return this.waitForCall((c) => c.direction === 'incoming' && (c.status === 'confirmed' || c.status === 'ended' || c.status === 'failed'), 'answered call confirmed');
  }

  /** Waits until the incoming/outgoing call `id` (default: the last one) is confirmed. */
  async waitForConfirmed(id?: string, timeoutMs?: number): Promise<CallInfo> {
    const call = await this.waitForCall((c, last) => (id ? c.id === id : last) && c.status !== 'new' && c.status !== 'ringing' && c.status !== 'progress' && c.status !== 'accepted', 'call confirmed', timeoutMs);
    if (call.status !== 'confirmed') throw new Error(`${this.name}: call ${call.id} ${call.status}: ${call.cause ?? ''}`);
    return call;
  }

  /** Ends the current call (BYE, CANCEL or a rejection, as fits its state); resolves once it ended. */
  async hangup(): Promise<CallInfo | undefined> {
    const before = await this.state();
    const live = before.sessions.filter((c) => c.status !== 'ended' && c.status !== 'failed').at(-1);
    const hungUp = await this.invoke<boolean>('hangup');
    if (!hungUp || !live) return undefined;
    return this.waitForEnd(live.id);
  }

  /** Waits until call `id` (default: the last one) has ended or failed. */
  waitForEnd(id?: string, timeoutMs?: number): Promise<CallInfo> {
    return this.waitForCall((c, last) => (id ? c.id === id : last) && (c.status === 'ended' || c.status === 'failed'), 'call ended', timeoutMs);
  }

  /** Sends DTMF on the current call: RFC 4733 events (default) or SIP INFO. */
  async sendDtmf(digits: string, transport: 'rfc4733' | 'info' = 'rfc4733'): Promise<void> {
    await this.invoke('sendDtmf', digits, transport);
  }

  /** Audio RTP counters of the current call (zeros when there is none). */
  mediaStats(): Promise<MediaStats> {
    return this.invoke<MediaStats>('mediaStats');
  }

  /** Polls mediaStats until packets flowed both ways; returns the last stats. */
  async waitForMedia({ minPacketsSent = 50, minPacketsReceived = 50, timeoutMs = 15_000 } = {}): Promise<MediaStats> {
    const deadline = Date.now() + timeoutMs;
    let stats = await this.mediaStats();
    while (stats.audioPacketsSent < minPacketsSent || stats.audioPacketsReceived < minPacketsReceived) {
      if (Date.now() > deadline) {
        throw new Error(`${this.name}: media did not flow within ${timeoutMs} ms: ${JSON.stringify(stats)}\n${this.diagnostics()}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 200));
      stats = await this.mediaStats();
    }
    return stats;
  }

  /** Every SIP message this phone sent and received, oldest first (last 500). */
  lastSipMessages(): Promise<SipTraceEntry[]> {
    return this.invoke<SipTraceEntry[]>('sipMessages');
  }

  /** The SIP messages this phone received (what the agent's side could read). */
  async receivedSipMessages(): Promise<string[]> {
    return (await this.lastSipMessages()).filter((m) => m.direction === 'received').map((m) => m.text);
  }

  /** Registration and calls as the page sees them. */
  state(): Promise<PageState> {
    return withTimeout(this.page.evaluate('window.webphone.state') as Promise<PageState>, this.timeoutMs, `${this.name} state`);
  }

  /** Page console output so far, for failure messages. */
  diagnostics(): string {
    return `--- ${this.name} console ---\n${this.consoleLines.join('\n')}`;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await withTimeout(this.page.evaluate('window.webphone && window.webphone.stop()'), 2_000, 'stop').catch(() => undefined);
    await withTimeout(this.page.close(), 5_000, 'page close').catch(() => undefined);
  }

  // ---------------------------------------------------------------------------------------------

  /**
   * Calls `window.webphone[method](...args)` in the page (sip-tests/fixtures/webphone/webphone.js).
   * A string expression, not a serialised function: transpilers may wrap functions in helpers
   * the page does not have. The result is the page's own (trusted test code) value.
   */
  private invoke<T = void>(method: string, ...args: unknown[]): Promise<T> {
    const expression = `window.webphone.${method}(...${JSON.stringify(args)})`;
    return withTimeout(this.page.evaluate(expression) as Promise<T>, this.timeoutMs, `${this.name} ${method}()`);
  }

  private note(line: string): void {
    this.consoleLines.push(line);
    if (this.consoleLines.length > MAX_CONSOLE_LINES) this.consoleLines.splice(0, this.consoleLines.length - MAX_CONSOLE_LINES);
  }

  private async waitForState(done: (state: PageState) => boolean, what: string, timeoutMs = this.timeoutMs): Promise<PageState> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const state = await this.state();
      if (done(state)) return state;
      if (Date.now() > deadline) {
        throw new Error(`${this.name}: timed out after ${timeoutMs} ms waiting for ${what}: ${JSON.stringify(state)}\n${this.diagnostics()}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }

  private async waitForCall(match: (call: CallInfo, isLast: boolean) => boolean, what: string, timeoutMs = this.timeoutMs): Promise<CallInfo> {
    let found: CallInfo | undefined;
    await this.waitForState((s) => {
      found = s.sessions.find((c, index) => match(c, index === s.sessions.length - 1));
      return found !== undefined;
    }, what, timeoutMs);
    return found!;
  }
}
