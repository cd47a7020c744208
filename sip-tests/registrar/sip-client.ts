/**
 * A minimal SIP UA for registrar tests where SIPp falls short (SHA-256, stale nonces, nc
 * replay, a second loopback source address): sends REGISTERs over UDP from a chosen local
 * address and answers digest challenges itself.
 */
import { createSocket, type Socket } from 'node:dgram';
import { randomBytes } from 'node:crypto';
import { computeDigestResponse, parseAuthParams } from '../../src/app/auth/digest.js';
import { computeHa1, type DigestAlgorithm } from '../../src/app/auth/ha1.js';

export interface SipResponse {
  status: number;
  reason: string;
  headers: Array<[string, string]>;
  raw: string;
  header(name: string): string | undefined;
  all(name: string): string[];
}

export function parseResponse(raw: string): SipResponse | null {
  const [head] = raw.split('\r\n\r\n');
  const lines = (head ?? '').split('\r\n');
  const status = /^SIP\/2\.0 (\d{3}) (.*)$/.exec(lines[0] ?? '');
  if (!status) return null;
  const headers: Array<[string, string]> = [];
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(':');
    if (colon > 0) headers.push([line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim()]);
  }
  const all = (name: string) => headers.filter(([n]) => n === name.toLowerCase()).map(([, v]) => v);
  return { status: Number(status[1]), reason: status[2]!, headers, raw, header: (n) => all(n)[0], all };
}

export interface UaOptions {
  target: { host: string; port: number };
  login: string;
  password: string;
  localAddress?: string;
  algorithm?: DigestAlgorithm;
  realm: string;
  userAgent?: string;
}

export class RegisteringUa {
  private socket!: Socket;
  localPort = 0;
  readonly callId = `${randomBytes(8).toString('hex')}@dialcore.test`;
  cseq = 0;
  nonce: string | null = null;
  nc = 0;
  private readonly waiting = new Map<string, (r: SipResponse) => void>();

  constructor(readonly options: UaOptions) {}

  async open(): Promise<void> {
    this.socket = createSocket('udp4');
    this.socket.on('message', (buf) => {
      const response = parseResponse(buf.toString('utf8'));
      if (!response) return;
      const branch = /branch=([^;\s,]+)/.exec(response.header('via') ?? '')?.[1];
      if (!branch) return;
      const wake = this.waiting.get(branch);
      if (response.status >= 200 && wake) {
        this.waiting.delete(branch);
        wake(response);
      }
    });
    await new Promise<void>((resolve) => this.socket.bind(0, this.options.localAddress ?? '127.0.0.1', resolve));
    this.localPort = this.socket.address().port;
  }

  close(): void {
    this.socket?.close();
  }

  /** Builds the Authorization for the current nonce (nc incremented unless `nc` given). */
  authorization(opts: { nc?: number; password?: string; algorithm?: DigestAlgorithm } = {}): string {
    const { login, realm } = this.options;
    const algorithm = opts.algorithm ?? this.options.algorithm ?? 'MD5';
    const uri = `sip:${this.options.target.host}:${this.options.target.port}`;
    const ncValue = opts.nc ?? ++this.nc;
    const nc = ncValue.toString(16).padStart(8, '0');
    const ha1 = computeHa1(algorithm, login, realm, opts.password ?? this.options.password);
    const c = { nonce: this.nonce!, uri, qop: 'auth', nc, cnonce: 'c0ffee' };
    const response = computeDigestResponse(algorithm, ha1, 'REGISTER', c);
    return `Digest username="${login}", realm="${realm}", nonce="${this.nonce}", uri="${uri}", algorithm=${algorithm}, qop=auth, nc=${nc}, cnonce="c0ffee", response="${response}"`;
  }

  /** Sends one REGISTER and waits for its final response. */
  async send(opts: { authorization?: string; expires?: number; contact?: string | null; timeoutMs?: number } = {}): Promise<SipResponse | null> {
    const { host, port } = this.options.target;
    const branch = `z9hG4bK${randomBytes(8).toString('hex')}`;
    const local = `${this.options.localAddress ?? '127.0.0.1'}:${this.localPort}`;
    const contact = opts.contact === null ? null : (opts.contact ?? `<sip:${this.options.login}@${local}>`);
    const lines = [
      `REGISTER sip:${host}:${port} SIP/2.0`,
      `Via: SIP/2.0/UDP ${local};branch=${branch};rport`,
      'Max-Forwards: 70',
      `From: <sip:${this.options.login}@${this.options.realm}>;tag=${randomBytes(4).toString('hex')}`,
      `To: <sip:${this.options.login}@${this.options.realm}>`,
      `Call-ID: ${this.callId}`,
      `CSeq: ${++this.cseq} REGISTER`,
      ...(contact ? [`Contact: ${contact}`] : []),
      ...(opts.expires !== undefined ? [`Expires: ${opts.expires}`] : []),
      ...(opts.authorization ? [`Authorization: ${opts.authorization}`] : []),
      `User-Agent: ${this.options.userAgent ?? 'dialcore-test-ua'}`,
      'Content-Length: 0',
      '',
      '',
    ];
    const done = new Promise<SipResponse | null>((resolve) => {
      const timer = setTimeout(() => {
        this.waiting.delete(branch);
        resolve(null);
      }, opts.timeoutMs ?? 3000);
      this.waiting.set(branch, (r) => {
        clearTimeout(timer);
        resolve(r);
      });
    });
    this.socket.send(lines.join('\r\n'), port, host);
    return done;
  }

  /** Takes the nonce from a 401 (the challenge for our algorithm). */
  takeChallenge(response: SipResponse): void {
    const algorithm = this.options.algorithm ?? 'MD5';
    for (const value of response.all('www-authenticate')) {
      const params = parseAuthParams(value)?.[0]?.params;
      if (params?.get('algorithm')?.toUpperCase() === algorithm) {
        this.nonce = params.get('nonce')!;
        this.nc = 0;
        return;
      }
    }
    throw new Error(`no ${algorithm} challenge in ${response.raw}`);
  }

  /** REGISTER, answer a 401 (reusing a held nonce first, like phones do). */
  async register(opts: { expires?: number; contact?: string | null; password?: string } = {}): Promise<SipResponse | null> {
    if (this.nonce) {
      const first = await this.send({ ...opts, authorization: this.authorization({ password: opts.password }) });
      if (first?.status !== 401) return first;
      this.takeChallenge(first);
    } else {
      const challenge = await this.send(opts);
      if (challenge?.status !== 401) return challenge;
      this.takeChallenge(challenge);
    }
    return this.send({ ...opts, authorization: this.authorization({ password: opts.password }) });
  }
}
