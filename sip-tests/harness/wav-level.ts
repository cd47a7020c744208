/** Reading back the audio a test phone received (WAV recordings of real clients). */
import { existsSync, readFileSync } from 'node:fs';

/** Seconds and RMS level of the 16-bit mono PCM in WAV files (the data chunk to the end of each file). */
export function pcm16Level(files: readonly string[]): { seconds: number; rms: number } {
  let samples = 0;
  let sumSquares = 0;
  let rate = 8000;
  for (const file of files) {
    if (!existsSync(file)) continue;
    const wav = readFileSync(file);
    const data = wav.indexOf('data', 12, 'ascii');
    if (wav.length < 44 || data < 0) continue;
    rate = wav.readUInt32LE(24) || rate;
    for (let i = data + 8; i + 1 < wav.length; i += 2) {
      const sample = wav.readInt16LE(i);
      sumSquares += sample * sample;
      samples++;
    }
  }
  return { seconds: samples / rate, rms: samples === 0 ? 0 : Math.sqrt(sumSquares / samples) };
}
