import { describe, expect, it } from 'vitest';
import { parseProxyCommand } from './proxy.js';
import type { AppConnection } from './app-server.js';

const app = {} as AppConnection;

describe('parseProxyCommand (drachtio `proxy` frame)', () => {
  it('reads the transaction, remainInDialog and destinations; keeps only headers an app may add', () => {
    const tokens = ['m1', 'proxy', 'txn-1', 'remainInDialog', 'fullResponse', '', 'serial', '', '', 'sip:a@192.0.2.1', 'sip:b@192.0.2.2'];
    const payload = ['INVITE sip:a@192.0.2.1 SIP/2.0', 'X-Account: 42', 'Via: SIP/2.0/UDP evil', 'Max-Forwards: 1', 'Bad Header: x', ''].join('\r\n');
    const cmd = parseProxyCommand(app, 'm1', tokens, payload)!;
    expect(cmd).toMatchObject({ txnId: 'txn-1', recordRoute: true, simultaneous: false, destinations: ['sip:a@192.0.2.1', 'sip:b@192.0.2.2'] });
    expect(cmd.extraHeaders).toEqual([{ name: 'X-Account', value: '42' }]);
  });

  it('reads simultaneous forking', () => {
    expect(parseProxyCommand(app, 'm', ['m', 'proxy', 'txn', '', 'fullResponse', '', 'simultaneous', '', '', 'sip:a@x'], '')?.simultaneous).toBe(true);
  });

  it('refuses a frame without a transaction or a destination', () => {
    expect(parseProxyCommand(app, 'm', ['m', 'proxy', '', '', '', '', 'serial', '', '', 'sip:a@x'], '')).toBeNull();
    expect(parseProxyCommand(app, 'm', ['m', 'proxy', 'txn', '', '', '', 'serial', '', ''], '')).toBeNull();
  });
});
