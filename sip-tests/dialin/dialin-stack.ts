/**
 * The agent stack (sip-tests/agents/agent-stack.ts) with dial-in wired as the core wires it:
 * rtpengine sends its DTMF events to the dial-in feature's UDP port, an access number routes
 * to the login IVR, the lockout routes are on the admin API. Short timeouts and tone prompts
 * keep the tests quick; `call()` runs one SIPp caller with a test RTP socket (rtp-caller.ts).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { pino } from 'pino';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startDialInFeature, type DialInFeature } from '../../src/app/dialin/index.js';
import { PROMPT_NAMES, type PromptName } from '../../src/app/dialin/ivr.js';
import { startAgentStack, type AgentStack } from '../agents/agent-stack.js';
import { CARRIER_IP } from '../calls/call-stack.js';
import { freePort, runSipp, type SippResult } from '../harness/index.js';
import { RtpCaller } from './rtp-caller.js';

export const ACCESS_NUMBER = '0800100200';
export const LOCKOUT_FAILURES = 4;

export interface DialInStack extends AgentStack {
  dialIn: DialInFeature;
  /** Redis keys the dial-in feature keeps per live call (none once every call ended). */
  dialInCallKeys(): Promise<string[]>;
}

export interface DialInCallOptions {
  caller: string;
  /** What the caller's SDP offers: PCMU and RFC 4733 telephone-event, or PCMU only. */
  media: 'rfc4733' | 'inband';
  scenario?: 'dialin-caller-wait-bye.xml' | 'dialin-caller-info.xml' | 'dialin-caller-hangup.xml';
  keys?: Record<string, string>;
  /** dialin-caller-info.xml: the ten keys sent by SIP INFO. */
  infoKeys?: string[];
  /** `-d` for the hang-up scenario. */
  holdMs?: number;
  timeoutMs?: number;
}

export interface DialInCall {
  rtp: RtpCaller;
  /** SIPp's run: settles when the call ended (BYE either way). */
  sipp: Promise<SippResult>;
}

export async function startDialInStack(
  timing: { firstDigitMs: number; interDigitMs: number },
  options: { rtpengineArgs?: string[] } = {},
): Promise<DialInStack> {
  const dtmfLogPort = await freePort();
  const promptsDir = mkdtempSync(join(tmpdir(), 'dialcore-dialin-prompts-'));
  let dialIn: DialInFeature | undefined;
  const st = await startAgentStack({
    dtmfLogPort,
    ...(options.rtpengineArgs ? { rtpengineArgs: options.rtpengineArgs } : {}),
    extend: async ({ cs, agents }) => {
      dialIn = await startDialInFeature(
        {
          srf: cs.srf,
          media: cs.media,
          redis: cs.services.redis,
          agents: agents.service,
          users: { getByDialInId: (id) => cs.services.store.getByDialInId(id) },
          instanceId: agents.service.instanceId,
          // DIALIN_TEST_LOG=debug shows the feature's logs (never digits or PINs)
          ...(process.env.DIALIN_TEST_LOG ? { logger: pino({ level: process.env.DIALIN_TEST_LOG }) } : {}),
        },
        {
          accessNumbers: [ACCESS_NUMBER],
          dtmfEvents: { host: '127.0.0.1', port: dtmfLogPort },
          firstDigitTimeoutMs: timing.firstDigitMs,
          interDigitTimeoutMs: timing.interDigitMs,
          lockoutFailures: LOCKOUT_FAILURES,
          lockoutWindowSeconds: 600,
          defaultLanguage: 'en',
          promptsDir,
          promptStyle: process.env.DIALIN_TEST_PROMPTS === 'speech' ? 'speech' : 'tones',
        },
      );
      cs.hooks.dialIn = dialIn.service;
      const feature = dialIn;
      return {
        routes: feature.routes,
        idle: () => feature.service.activeCount === 0 && feature.dtmf.listening === 0,
        async stop() {
          await feature.stop();
          rmSync(promptsDir, { recursive: true, force: true });
        },
      };
    },
  });
  return {
    ...st,
    dialIn: dialIn!,
    async dialInCallKeys() {
      const reply = (await st.cs.services.redis.send(['KEYS', 'dc:dialin-call:*'])) as unknown[];
      return reply.map(String);
    },
  };
}

/** A caller from the carrier trunk (127.0.0.2) to the access number. */
export async function call(st: DialInStack, options: DialInCallOptions): Promise<DialInCall> {
  const rtp = await RtpCaller.open(CARRIER_IP);
  const scenario = options.scenario ?? 'dialin-caller-wait-bye.xml';
  const sipp = runSipp({
    scenario,
    target: st.cs.target,
    service: ACCESS_NUMBER,
    calls: 1,
    keys: {
      caller: options.caller,
      rtp_port: String(rtp.port),
      formats: options.media === 'rfc4733' ? '0 101' : '0',
      sdp_extra: options.media === 'rfc4733' ? 'a=rtpmap:101 telephone-event/8000' : 'a=ptime:20',
      ...options.keys,
    },
    ...(options.infoKeys ? { inf: { rows: [[options.caller, String(rtp.port), ...options.infoKeys]] } } : {}),
    timeoutMs: options.timeoutMs ?? 90_000,
    extraArgs: [...st.cs.carrierSippArgs(), ...(options.holdMs !== undefined ? ['-d', String(options.holdMs)] : [])],
  });
  sipp.catch(() => undefined).finally(() => rtp.close());
  return { rtp, sipp };
}

/** How many 20 ms RTP packets each prompt lasts (the stack's default-language prompts). */
export function promptPackets(st: DialInStack): Record<PromptName, number> {
  return Object.fromEntries(PROMPT_NAMES.map((name) => [name, Math.round(st.dialIn.prompts.file(name).durationMs / 20)])) as Record<PromptName, number>;
}
