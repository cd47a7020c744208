import { afterEach, describe, expect, it, vi } from 'vitest';
import {
  LegSessionTimer,
  negotiateAsUas,
  parseSessionExpires,
  retryIntervalAfter422,
  timerFromResponse,
  uacRequestHeaders,
  type NegotiatedTimer,
} from './session-timer.js';

const config = { sessionExpiresSeconds: 1800, minSessionExpiresSeconds: 90 };
const msg = (headers: Record<string, string>) => ({ get: (name: string) => Object.entries(headers).find(([k]) => k.toLowerCase() === name.toLowerCase())?.[1] });

describe('RFC 4028 negotiation', () => {
  it('parses Session-Expires with its refresher; anything else is malformed', () => {
    expect(parseSessionExpires('1800;refresher=uac')).toEqual({ seconds: 1800, refresher: 'uac' });
    expect(parseSessionExpires(' 90 ; REFRESHER=UAS ; x=y')).toEqual({ seconds: 90, refresher: 'uas' });
    expect(parseSessionExpires(undefined)).toBeNull();
    for (const bad of ['', 'abc', '-5', '0', '90;refresher=both', '99999999999']) expect(parseSessionExpires(bad)).toBe('malformed');
  });

  it('§9: below our Min-SE -> 422 with Min-SE; malformed -> 400', () => {
    expect(negotiateAsUas(msg({ 'Session-Expires': '60' }), config)).toEqual({ ok: false, status: 422, reason: 'Session Interval Too Small', headers: { 'Min-SE': '90' } });
    expect(negotiateAsUas(msg({ 'Session-Expires': 'soon' }), config)).toMatchObject({ ok: false, status: 400 });
  });

  it('§9: a UAC supporting timer refreshes unless it names us; Require: timer only toward it', () => {
    expect(negotiateAsUas(msg({ Supported: 'replaces, timer', 'Session-Expires': '600' }), config)).toEqual({
      ok: true, timer: { seconds: 600, weRefresh: false }, headers: { 'Session-Expires': '600;refresher=uac', Require: 'timer' },
    });
    expect(negotiateAsUas(msg({ Supported: 'timer', 'Session-Expires': '600;refresher=uas' }), config)).toMatchObject({ timer: { seconds: 600, weRefresh: true } });
    // no timer support: we refresh, and no Require (the UAC would reject the 2xx)
    expect(negotiateAsUas(msg({}), config)).toEqual({ ok: true, timer: { seconds: 1800, weRefresh: true }, headers: { 'Session-Expires': '1800;refresher=uas' } });
  });

  it('§9: lowers a long interval to ours, never below the request\'s Min-SE', () => {
    expect(negotiateAsUas(msg({ Supported: 'timer', 'Session-Expires': '7200' }), config)).toMatchObject({ timer: { seconds: 1800 } });
    expect(negotiateAsUas(msg({ Supported: 'timer', 'Session-Expires': '7200', 'Min-SE': '3600' }), config)).toMatchObject({ timer: { seconds: 3600 } });
  });

  it('§7: our request headers; the 2xx decides; a 422 is retried with its Min-SE', () => {
    expect(uacRequestHeaders(1800, config)).toEqual({ Supported: 'timer', 'Session-Expires': '1800', 'Min-SE': '90' });
    expect(uacRequestHeaders(600, config, 'uac')['Session-Expires']).toBe('600;refresher=uac');
    expect(timerFromResponse(msg({ 'Session-Expires': '900;refresher=uas' }), config)).toEqual({ seconds: 900, weRefresh: false });
    expect(timerFromResponse(msg({ 'Session-Expires': '900' }), config)).toEqual({ seconds: 900, weRefresh: true });
    expect(timerFromResponse(msg({}), config)).toBeNull(); // §7.4: no timer on that leg
    // hostile values are bounded: no refresh storm, no timer beyond what setTimeout can hold
    expect(timerFromResponse(msg({ 'Session-Expires': '1' }), config)).toEqual({ seconds: 90, weRefresh: true });
    expect(timerFromResponse(msg({ 'Session-Expires': '9999999999' }), config)).toEqual({ seconds: 86_400, weRefresh: true });
    expect(negotiateAsUas(msg({ 'Session-Expires': '9999999999', 'Min-SE': '9999999999' }), config)).toMatchObject({ timer: { seconds: 86_400 } });
    expect(retryIntervalAfter422(msg({ 'Min-SE': '9999999999' }), 90)).toBeNull();
    expect(retryIntervalAfter422(msg({ 'Min-SE': '300' }), 90)).toBe(300);
    expect(retryIntervalAfter422(msg({ 'Min-SE': '60' }), 90)).toBeNull();
    expect(retryIntervalAfter422(msg({}), 90)).toBeNull();
  });
});

describe('LegSessionTimer', () => {
  afterEach(() => void vi.useRealTimers());

  it('the refresher refreshes at half the interval and keeps going with what each 2xx set', async () => {
    vi.useFakeTimers();
    const refreshes: number[] = [];
    const expired = vi.fn();
    const timer = new LegSessionTimer({ refresh: async (s) => (refreshes.push(s), { seconds: 120, weRefresh: true }), expired });
    timer.set({ seconds: 100, weRefresh: true });
    await vi.advanceTimersByTimeAsync(49_999);
    expect(refreshes).toEqual([]);
    await vi.advanceTimersByTimeAsync(1);
    expect(refreshes).toEqual([100]);
    await vi.advanceTimersByTimeAsync(60_000);
    expect(refreshes).toEqual([100, 120]);
    expect(expired).not.toHaveBeenCalled();
    timer.stop();
  });

  it('a timer taken over from another owner keeps the deadlines of the 2xx that set it', async () => {
    vi.useFakeTimers();
    const refreshes: number[] = [];
    const timer = new LegSessionTimer({ refresh: async (s) => (refreshes.push(s), null), expired: vi.fn() });
    const setAt = Date.now();
    await vi.advanceTimersByTimeAsync(30_000); // the hand-over, 30 s into a 100 s interval
    timer.set({ seconds: 100, weRefresh: true }, setAt);
    expect(timer.negotiatedAt).toBe(setAt);
    await vi.advanceTimersByTimeAsync(19_999);
    expect(refreshes).toEqual([]);
    await vi.advanceTimersByTimeAsync(1);
    expect(refreshes).toEqual([100]);
    const expiredLate = vi.fn();
    const past = new LegSessionTimer({ refresh: () => Promise.reject(new Error('not ours')), expired: expiredLate });
    past.set({ seconds: 90, weRefresh: false }, Date.now() - 60_000); // already past interval - 30 s
    await vi.advanceTimersByTimeAsync(0);
    expect(expiredLate).toHaveBeenCalledOnce();
    timer.stop();
  });

  it('§10: the other side ends the session at interval - min(32, interval/3) without a refresh; a refresh resets it', async () => {
    vi.useFakeTimers();
    const expired = vi.fn();
    const timer = new LegSessionTimer({ refresh: () => Promise.reject(new Error('not ours')), expired });
    const theirs: NegotiatedTimer = { seconds: 90, weRefresh: false };
    timer.set(theirs);
    await vi.advanceTimersByTimeAsync(59_000);
    timer.set(theirs); // the peer refreshed
    await vi.advanceTimersByTimeAsync(59_999);
    expect(expired).not.toHaveBeenCalled();
    await vi.advanceTimersByTimeAsync(1);
    expect(expired).toHaveBeenCalledOnce();
  });

  it('a refresh that fails is retried halfway to the expiry; if none succeeds the session ends; stop() cancels everything', async () => {
    vi.useFakeTimers();
    const expired = vi.fn();
    let attempts = 0;
    const timer = new LegSessionTimer({ refresh: () => (attempts++, Promise.reject(new Error('500'))), expired });
    timer.set({ seconds: 1800, weRefresh: true });
    await vi.advanceTimersByTimeAsync(900_000);
    expect(attempts).toBe(1);
    await vi.advanceTimersByTimeAsync((1800_000 - 32_000 - 900_000) / 2);
    expect(attempts).toBe(2);
    await vi.advanceTimersByTimeAsync(1800_000 - 32_000 - 900_000 - (1800_000 - 32_000 - 900_000) / 2 - 1);
    expect(expired).not.toHaveBeenCalled();
    await vi.advanceTimersByTimeAsync(1);
    expect(expired).toHaveBeenCalledOnce();
    expect(attempts).toBeGreaterThan(2);

    // a retry that succeeds keeps the session
    const kept = vi.fn();
    let first = true;
    const retried = new LegSessionTimer({
      refresh: () => (first ? ((first = false), Promise.reject(new Error('491'))) : Promise.resolve({ seconds: 1800, weRefresh: true })),
      expired: kept,
    });
    retried.set({ seconds: 1800, weRefresh: true });
    await vi.advanceTimersByTimeAsync(2 * 1800_000);
    expect(kept).not.toHaveBeenCalled();
    retried.stop();

    const stopped = vi.fn();
    const other = new LegSessionTimer({ refresh: async () => null, expired: stopped });
    other.set({ seconds: 90, weRefresh: false });
    other.stop();
    await vi.advanceTimersByTimeAsync(100_000);
    expect(stopped).not.toHaveBeenCalled();
  });
});
