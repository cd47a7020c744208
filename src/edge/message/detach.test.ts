import { describe, expect, it } from 'vitest';
import { detachFromMessage } from './detach.js';

describe('detachFromMessage', () => {
  it('returns an equal string, non-ASCII text included', () => {
    expect(detachFromMessage('z9hG4bK776asdhds|10.0.0.1:5060|REGISTER')).toBe('z9hG4bK776asdhds|10.0.0.1:5060|REGISTER');
    expect(detachFromMessage('2543|sip:jürgen@example.com|☎|')).toBe('2543|sip:jürgen@example.com|☎|');
    expect(detachFromMessage('')).toBe('');
  });
});
