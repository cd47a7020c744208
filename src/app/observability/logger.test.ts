import { describe, expect, it } from 'vitest';
import { Writable } from 'node:stream';
import { createLogger } from './logger.js';

function capture(): { stream: Writable; text: () => string } {
  const chunks: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      chunks.push(chunk.toString());
      cb();
    },
  });
  return { stream, text: () => chunks.join('') };
}

describe('createLogger', () => {
  it('redacts secrets at top level and nested', () => {
    const out = capture();
    const log = createLogger({ destination: out.stream, level: 'info' });
    log.info(
      {
        password: 'hunter2-top',
        user: { password: 'hunter2-nested', ha1Md5: 'abcdef0123', dialIn: { pin: '98765' } },
        headers: { authorization: 'Bearer tok-123', 'proxy-authorization': 'Digest x' },
        token: 'tok-456',
        login: '1001',
      },
      'hello',
    );
    const text = out.text();
    expect(text).toContain('"login":"1001"');
    for (const secret of ['hunter2-top', 'hunter2-nested', 'abcdef0123', '98765', 'tok-123', 'tok-456', 'Digest x']) {
      expect(text).not.toContain(secret);
    }
    expect(text).toContain('[redacted]');
  });
});
