/**
 * The agent-side prompts rtpengine plays with `play media` (file): the hang-up beep and the
 * call-connect announcement (a two-tone chime unless a recorded file is configured). Written once
 * at start as 8 kHz 16-bit mono PCM WAV (RIFF), which rtpengine's decoder reads.
 */
import { mkdirSync, writeFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { pcm16Wav } from '../media/wav.js';

const RATE = 8000;

/** A WAV file of tone segments: [frequency Hz (0 = silence), milliseconds][]. */
export function toneWav(segments: ReadonlyArray<readonly [number, number]>, amplitude = 0.3): Buffer {
  const samples = segments.reduce((n, [, ms]) => n + Math.round((RATE * ms) / 1000), 0);
  const data = Buffer.alloc(samples * 2);
  let offset = 0;
  for (const [frequency, ms] of segments) {
    const count = Math.round((RATE * ms) / 1000);
    for (let i = 0; i < count; i++) {
      // 5 ms fade in/out so the tone does not click
      const edge = Math.min(i, count - 1 - i) / (RATE * 0.005);
      const gain = amplitude * Math.min(1, edge);
      const value = frequency === 0 ? 0 : Math.sin((2 * Math.PI * frequency * i) / RATE) * gain;
      data.writeInt16LE(Math.round(value * 32767), offset);
      offset += 2;
    }
  }
  return pcm16Wav(data, 1, RATE);
}

export interface AgentPrompts {
  /** Played to the agent when the customer hangs up (user switch `hangupBeep`). */
  hangupBeep: string;
  /** Played to the agent when a customer is put through (user switch `callConnectAnnouncement`). */
  callConnected: string;
  /** Looped to the agent between calls and to a held customer; none = silence. */
  holdMusic?: string;
}

/** Writes the built-in prompts into `directory` (created if needed) and returns their paths. */
export function writeAgentPrompts(directory: string, overrides: Partial<AgentPrompts> = {}): AgentPrompts {
  mkdirSync(directory, { recursive: true });
  const beep = join(directory, 'hangup-beep.wav');
  const chime = join(directory, 'call-connected.wav');
  if (!existsSync(beep)) writeFileSync(beep, toneWav([[0, 100], [1000, 400], [0, 200]]));
  if (!existsSync(chime)) writeFileSync(chime, toneWav([[0, 100], [660, 180], [880, 260], [0, 100]]));
  return {
    hangupBeep: overrides.hangupBeep ?? beep,
    callConnected: overrides.callConnected ?? chime,
    ...(overrides.holdMusic ? { holdMusic: overrides.holdMusic } : {}),
  };
}
