/**
 * The dial-in login IVR as a small state machine, free of SIP and media: it asks for the ID and
 * the PIN, collects DTMF digits and decides, through an injected port that plays prompts and
 * checks credentials.
 *
 *   welcome -> "enter your ID followed by #" -> ID -> "enter your PIN followed by #" -> PIN
 *     -> check: ok -> "connected" -> logged in
 *               invalid -> "invalid" -> again (3 attempts) -> "goodbye" -> ended
 *               locked / inactive / wrong method / over maxSessions -> its prompt -> "goodbye" -> ended
 *
 * - The PIN is always asked, whatever the ID (even empty or unknown): a wrong ID and a wrong PIN
 *   get the same prompts along the same path (no enumeration).
 * - Key-ahead: a digit typed during an interruptible prompt stops it (port.stopPlaying) and
 *   counts; digits typed ahead are kept for the next entry.
 * - An entry ends with '#', at `maxDigits` digits, or when no digit comes for `interDigitMs`
 *   after the first; nothing within `firstDigitMs` after the prompt gives an empty entry.
 */

export type PromptName =
  | 'welcome'
  | 'enter-id'
  | 'enter-pin'
  | 'invalid'
  | 'locked'
  | 'refused-inactive'
  | 'refused-method'
  | 'refused-sessions'
  | 'connected'
  | 'goodbye';

export const PROMPT_NAMES: readonly PromptName[] = [
  'welcome', 'enter-id', 'enter-pin', 'invalid', 'locked', 'refused-inactive', 'refused-method', 'refused-sessions', 'connected', 'goodbye',
];

/** What a check of an ID and PIN found. Only `ok` reveals that the ID and PIN were right. */
export type LoginVerdict = 'ok' | 'invalid' | 'locked' | 'inactive' | 'wrong-method' | 'max-sessions';

export interface IvrPort {
  /** Starts a prompt; resolves with how long it plays (ms) once it has started. */
  play(prompt: PromptName): Promise<number>;
  /** Stops the prompt playing (key-ahead). */
  stopPlaying(): Promise<void>;
  /** Checks an ID and PIN (always the full check, whatever the ID). */
  check(id: string, pin: string): Promise<LoginVerdict>;
}

export interface IvrTiming {
  firstDigitMs: number;
  interDigitMs: number;
  maxDigits: number;
  attempts: number;
}

export const DEFAULT_IVR_TIMING: IvrTiming = { firstDigitMs: 10_000, interDigitMs: 5_000, maxDigits: 20, attempts: 3 };

export type IvrOutcome =
  | { kind: 'logged-in'; id: string }
  | { kind: 'ended'; reason: 'attempts' | 'locked' | 'refused' | 'hangup' };

const REFUSAL_PROMPT: Record<Exclude<LoginVerdict, 'ok' | 'invalid'>, PromptName> = {
  locked: 'locked',
  inactive: 'refused-inactive',
  'wrong-method': 'refused-method',
  'max-sessions': 'refused-sessions',
};

type Wake = 'digit' | 'timeout' | 'cancel';

const DTMF_DIGIT = /^[0-9*#A-D]$/;

export class DialInIvr {
  private buffer = '';
  private cancelled = false;
  private wake?: (why: Wake) => void;
  /** Digits are dropped (not kept for the next entry) while a closing prompt plays. */
  private listening = true;

  constructor(
    private readonly port: IvrPort,
    private readonly timing: IvrTiming = DEFAULT_IVR_TIMING,
  ) {}

  /** A DTMF digit from the caller (any source, de-duplicated before). */
  digit(digit: string): void {
    if (this.cancelled || !this.listening || !DTMF_DIGIT.test(digit)) return;
    // bounded: a caller cannot make the buffer grow past two full entries
    if (this.buffer.length < 2 * (this.timing.maxDigits + 1)) this.buffer += digit;
    this.wake?.('digit');
  }

  /** The caller hung up (or the call is being torn down): `run` ends at once. */
  cancel(): void {
    this.cancelled = true;
    this.wake?.('cancel');
  }

  async run(): Promise<IvrOutcome> {
    const hangup: IvrOutcome = { kind: 'ended', reason: 'hangup' };
    if (!(await this.say('welcome', true))) return hangup;
    for (let attempt = 1; attempt <= this.timing.attempts; attempt++) {
      if (this.buffer === '' && !(await this.say('enter-id', true))) return hangup;
      const id = await this.collect();
      if (id === null) return hangup;
      if (this.buffer === '' && !(await this.say('enter-pin', true))) return hangup;
      const pin = await this.collect();
      if (pin === null) return hangup;
      const verdict = await this.port.check(id, pin);
      if (this.cancelled) return hangup;
      if (verdict === 'ok') {
        this.listening = false;
        if (!(await this.say('connected', false))) return hangup;
        return { kind: 'logged-in', id };
      }
      if (verdict !== 'invalid') {
        this.listening = false;
        if (!(await this.say(REFUSAL_PROMPT[verdict], false)) || !(await this.say('goodbye', false))) return hangup;
        return { kind: 'ended', reason: verdict === 'locked' ? 'locked' : 'refused' };
      }
      this.buffer = '';
      if (attempt < this.timing.attempts && !(await this.say('invalid', true))) return hangup;
    }
    this.listening = false;
    if (!(await this.say('invalid', false)) || !(await this.say('goodbye', false))) return hangup;
    return { kind: 'ended', reason: 'attempts' };
  }

  /**
   * Plays a prompt and waits for its end; an interruptible prompt ends early on a digit
   * (key-ahead: the prompt is stopped). False when the caller hung up.
   */
  private async say(prompt: PromptName, interruptible: boolean): Promise<boolean> {
    if (this.cancelled) return false;
    if (interruptible && this.buffer !== '') return true;
    const ms = await this.port.play(prompt);
    const ends = Date.now() + ms;
    for (;;) {
      if (this.cancelled) return false;
      if (interruptible && this.buffer !== '') {
        await this.port.stopPlaying();
        return !this.cancelled;
      }
      const left = ends - Date.now();
      if (left <= 0) return true;
      const why = await this.sleep(left);
      if (why === 'timeout') return !this.cancelled;
    }
  }

  /** One entry: digits up to '#', `maxDigits` digits, or a timeout. null when the caller hung up. */
  private async collect(): Promise<string | null> {
    let entry = '';
    for (;;) {
      while (this.buffer !== '') {
        const next = this.buffer[0]!;
        this.buffer = this.buffer.slice(1);
        if (next === '#') return entry;
        entry += next;
        if (entry.length >= this.timing.maxDigits) return entry;
      }
      if (this.cancelled) return null;
      const why = await this.sleep(entry === '' ? this.timing.firstDigitMs : this.timing.interDigitMs);
      if (why === 'cancel') return null;
      if (why === 'timeout') return entry;
    }
  }

  private sleep(ms: number): Promise<Wake> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => done('timeout'), ms);
      const done = (why: Wake): void => {
        clearTimeout(timer);
        this.wake = undefined;
        resolve(why);
      };
      this.wake = done;
    });
  }
}
