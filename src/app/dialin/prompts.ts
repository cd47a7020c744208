/**
 * The dial-in prompts, spoken at start with Debian's espeak-ng and turned by sox into 8 kHz
 * 16-bit mono PCM WAV (what rtpengine's `play media` reads). One set per language: the default
 * language's set is made at start, another language's the first time a caller of that language
 * needs it (until then the default set is played). Without espeak-ng or sox the prompts are tone
 * patterns (agents/prompts.ts toneWav), and that is logged.
 *
 * Files are cached in `directory` by language and a hash of the text, so a restart reuses them.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { Logger } from 'pino';
import { toneWav } from '../agents/prompts.js';
import { PROMPT_NAMES, type PromptName } from './ivr.js';

const run = promisify(execFile);

const TEXTS: Record<string, Record<PromptName, string>> = {
  en: {
    welcome: 'Welcome.',
    'enter-id': 'Please enter your agent I D, followed by the hash key.',
    'enter-pin': 'Please enter your PIN, followed by the hash key.',
    invalid: 'The I D or PIN is not valid.',
    locked: 'Too many failed attempts. Access is locked for now.',
    'refused-inactive': 'Your account is not active.',
    'refused-method': 'Your account is not set up for dial-in.',
    'refused-sessions': 'You already have the most sessions allowed.',
    connected: 'You are connected. Please hold for your first call.',
    goodbye: 'Goodbye.',
  },
  fr: {
    welcome: 'Bienvenue.',
    'enter-id': 'Veuillez saisir votre identifiant, suivi de la touche dièse.',
    'enter-pin': 'Veuillez saisir votre code secret, suivi de la touche dièse.',
    invalid: "L'identifiant ou le code secret n'est pas valide.",
    locked: "Trop d'essais infructueux. L'accès est bloqué pour le moment.",
    'refused-inactive': "Votre compte n'est pas actif.",
    'refused-method': "Votre compte n'est pas configuré pour l'accès par téléphone.",
    'refused-sessions': 'Vous avez déjà le nombre maximal de sessions.',
    connected: 'Vous êtes connecté. Veuillez patienter pour votre premier appel.',
    goodbye: 'Au revoir.',
  },
  es: {
    welcome: 'Bienvenido.',
    'enter-id': 'Introduzca su identificador, seguido de la tecla almohadilla.',
    'enter-pin': 'Introduzca su PIN, seguido de la tecla almohadilla.',
    invalid: 'El identificador o el PIN no es válido.',
    locked: 'Demasiados intentos fallidos. El acceso está bloqueado por ahora.',
    'refused-inactive': 'Su cuenta no está activa.',
    'refused-method': 'Su cuenta no está configurada para el acceso telefónico.',
    'refused-sessions': 'Ya tiene el máximo de sesiones permitidas.',
    connected: 'Está conectado. Espere su primera llamada.',
    goodbye: 'Adiós.',
  },
  de: {
    welcome: 'Willkommen.',
    'enter-id': 'Bitte geben Sie Ihre Kennung ein, gefolgt von der Rautetaste.',
    'enter-pin': 'Bitte geben Sie Ihre PIN ein, gefolgt von der Rautetaste.',
    invalid: 'Die Kennung oder PIN ist ungültig.',
    locked: 'Zu viele Fehlversuche. Der Zugang ist vorerst gesperrt.',
    'refused-inactive': 'Ihr Konto ist nicht aktiv.',
    'refused-method': 'Ihr Konto ist nicht für die Einwahl eingerichtet.',
    'refused-sessions': 'Sie haben bereits die höchste Zahl an Sitzungen.',
    connected: 'Sie sind verbunden. Bitte warten Sie auf Ihren ersten Anruf.',
    goodbye: 'Auf Wiedersehen.',
  },
};

/** Tone patterns when speech cannot be made: one distinct pattern per prompt. */
const TONES: Record<PromptName, ReadonlyArray<readonly [number, number]>> = {
  welcome: [[0, 100], [523, 200], [659, 200], [784, 300], [0, 100]],
  'enter-id': [[0, 100], [880, 150], [0, 100], [880, 150], [0, 100]],
  'enter-pin': [[0, 100], [988, 150], [0, 100], [988, 150], [0, 100], [988, 150], [0, 100]],
  invalid: [[0, 100], [440, 300], [330, 400], [0, 100]],
  locked: [[0, 100], [300, 600], [0, 100], [300, 600], [0, 100]],
  'refused-inactive': [[0, 100], [350, 500], [0, 100]],
  'refused-method': [[0, 100], [350, 250], [0, 80], [350, 250], [0, 100]],
  'refused-sessions': [[0, 100], [350, 150], [0, 60], [350, 150], [0, 60], [350, 150], [0, 100]],
  connected: [[0, 100], [660, 180], [880, 260], [0, 100]],
  goodbye: [[0, 100], [784, 200], [523, 300], [0, 100]],
};

export const SUPPORTED_PROMPT_LANGUAGES = Object.keys(TEXTS);

export interface PromptFile {
  path: string;
  /** Playing time in ms (from the WAV size). */
  durationMs: number;
}

type PromptSet = Record<PromptName, PromptFile>;

/** "fr-FR" -> "fr"; an unknown language -> null. */
export function promptLanguage(tag: string | null | undefined): string | null {
  if (!tag) return null;
  const base = tag.toLowerCase().split('-')[0]!;
  return base in TEXTS ? base : null;
}

export class DialInPrompts {
  private readonly sets = new Map<string, PromptSet>();
  private readonly making = new Map<string, Promise<void>>();
  private speech: boolean | undefined;
  readonly defaultLanguage: string;

  private constructor(
    private readonly directory: string,
    defaultLanguage: string,
    private readonly log?: Logger,
    style: 'speech' | 'tones' = 'speech',
  ) {
    this.defaultLanguage = promptLanguage(defaultLanguage) ?? 'en';
    if (style === 'tones') this.speech = false;
  }

  /**
   * Makes the default language's prompts before returning: spoken when espeak-ng and sox are
   * there, else (or with style `tones`, short prompts for tests and benches) tone patterns.
   */
  static async create(directory: string, defaultLanguage: string, log?: Logger, style: 'speech' | 'tones' = 'speech'): Promise<DialInPrompts> {
    mkdirSync(directory, { recursive: true });
    const prompts = new DialInPrompts(directory, defaultLanguage, log, style);
    if (promptLanguage(defaultLanguage) === null) log?.warn({ language: defaultLanguage }, 'no dial-in prompt texts for this language; using en');
    await prompts.ensure(prompts.defaultLanguage);
    return prompts;
  }

  /** The prompt in `language` when made, else in the default language (and the language is made for next time). */
  file(prompt: PromptName, language?: string | null): PromptFile {
    const wanted = promptLanguage(language) ?? this.defaultLanguage;
    const set = this.sets.get(wanted);
    if (set) return set[prompt];
    void this.ensure(wanted);
    return this.sets.get(this.defaultLanguage)![prompt];
  }

  ensure(language: string): Promise<void> {
    let making = this.making.get(language);
    if (!making) {
      making = this.make(language).catch((err: unknown) => {
        this.log?.warn({ err: err instanceof Error ? err.message : String(err), language }, 'dial-in prompts not made');
        this.making.delete(language);
      });
      this.making.set(language, making);
    }
    return making;
  }

  private async make(language: string): Promise<void> {
    const texts = TEXTS[language] ?? TEXTS.en!;
    const spoken = await this.canSpeak();
    const set = {} as PromptSet;
    for (const prompt of PROMPT_NAMES) {
      const text = texts[prompt];
      const hash = createHash('sha256').update(spoken ? `${language}\n${text}` : `tones\n${JSON.stringify(TONES[prompt])}`).digest('hex').slice(0, 12);
      const path = join(this.directory, spoken ? `${language}-${prompt}-${hash}.wav` : `tones-${prompt}-${hash}.wav`);
      if (!existsSync(path)) {
        if (spoken) await speak(text, language, path);
        else writeFileSync(path, toneWav(TONES[prompt]));
      }
      set[prompt] = { path, durationMs: wavDurationMs(path) };
    }
    this.sets.set(language, set);
  }

  private async canSpeak(): Promise<boolean> {
    if (this.speech === undefined) {
      try {
        await run('espeak-ng', ['--version'], { timeout: 5000 });
        await run('sox', ['--version'], { timeout: 5000 });
        this.speech = true;
      } catch {
        this.speech = false;
        this.log?.warn('espeak-ng or sox not found: dial-in prompts are tone patterns (scripts/setup.sh installs both)');
      }
    }
    return this.speech;
  }
}

/** espeak-ng (22.05 kHz WAV) -> sox -> 8 kHz 16-bit mono PCM WAV, written atomically. */
async function speak(text: string, language: string, path: string): Promise<void> {
  const raw = `${path}.${process.pid}.espeak.wav`;
  const converted = `${path}.${process.pid}.tmp.wav`;
  try {
    await run('espeak-ng', ['-v', language, '-s', '150', '-w', raw, text], { timeout: 20_000 });
    await run('sox', [raw, '-r', '8000', '-c', '1', '-b', '16', '-e', 'signed-integer', converted], { timeout: 20_000 });
    renameSync(converted, path);
  } finally {
    rmSync(raw, { force: true });
    rmSync(converted, { force: true });
  }
}

/** 8 kHz 16-bit mono: 16 bytes per ms after the 44-byte header (sox writes the plain RIFF header). */
function wavDurationMs(path: string): number {
  return Math.max(0, Math.round((statSync(path).size - 44) / 16));
}
