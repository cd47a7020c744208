/**
 * Dial-in wired for the core: prompts made, rtpengine's DTMF events received (and forwarded
 * between instances), the lockouts and their admin API:
 *
 *   GET    /v1/dialin/lockouts                   IDs and caller numbers locked out now
 *   DELETE /v1/dialin/lockouts/{id|caller}/{value}  clear one (204; 404 when none)
 */
import { join } from 'node:path';
import type { Logger } from 'pino';
import { HttpError, send, type ApiRoute } from '../admin/server.js';
import type { MediaSessionRegistry } from '../media/index.js';
import type { Srf } from '../sip/srf.js';
import type { Redis } from '../users/redis.js';
import type { UserRecord } from '../users/types.js';
import { DialInService, type DialInAgents } from './dialin-service.js';
import { DtmfEventRouter } from './dtmf-events.js';
import { DEFAULT_IVR_TIMING } from './ivr.js';
import { DialInLockouts, type LockoutKind } from './lockout.js';
import { DialInPrompts } from './prompts.js';

export { DialInService } from './dialin-service.js';
export { DialInLockouts } from './lockout.js';
export { parseDtmfLog } from './dtmf-events.js';
export { DialInPrompts } from './prompts.js';

export interface DialInConfig {
  accessNumbers: readonly string[];
  /** Where rtpengine sends DTMF events (its --dtmf-log-dest); null = only forwarded events (another instance listens). */
  dtmfEvents: { host: string; port: number } | null;
  firstDigitTimeoutMs: number;
  interDigitTimeoutMs: number;
  lockoutFailures: number;
  lockoutWindowSeconds: number;
  defaultLanguage: string;
  /** Directory the prompts are written to (a `dialin` folder is made in it). */
  promptsDir: string;
  /** `tones`: tone patterns instead of speech (tests, benches). Default speech. */
  promptStyle?: 'speech' | 'tones';
}

export interface DialInFeature {
  service: DialInService;
  prompts: DialInPrompts;
  lockouts: DialInLockouts;
  dtmf: DtmfEventRouter;
  routes: ApiRoute[];
  stop(): Promise<void>;
}

export async function startDialInFeature(
  deps: {
    srf: Srf;
    media: MediaSessionRegistry;
    redis: Redis;
    agents: DialInAgents;
    users: { getByDialInId(id: string): Promise<UserRecord | null> };
    instanceId: string;
    logger?: Logger;
  },
  config: DialInConfig,
): Promise<DialInFeature> {
  const prompts = await DialInPrompts.create(join(config.promptsDir, 'dialin'), config.defaultLanguage, deps.logger, config.promptStyle ?? 'speech');
  const dtmf = new DtmfEventRouter(deps.redis, deps.instanceId, deps.logger);
  try {
    await dtmf.start(config.dtmfEvents);
  } catch (err) {
    // another process on this host (an app worker) already receives them and forwards ours
    deps.logger?.warn({ err: err instanceof Error ? err.message : String(err), listen: config.dtmfEvents }, 'DTMF event port not bound here');
  }
  const lockouts = new DialInLockouts(deps.redis, { failures: config.lockoutFailures, windowSeconds: config.lockoutWindowSeconds });
  const service = new DialInService({
    srf: deps.srf,
    media: deps.media,
    agents: deps.agents,
    users: deps.users,
    lockouts,
    prompts,
    dtmf,
    accessNumbers: config.accessNumbers,
    timing: { ...DEFAULT_IVR_TIMING, firstDigitMs: config.firstDigitTimeoutMs, interDigitMs: config.interDigitTimeoutMs },
    ...(deps.logger ? { logger: deps.logger } : {}),
  });
  return {
    service,
    prompts,
    lockouts,
    dtmf,
    routes: lockoutRoutes(lockouts),
    async stop() {
      await service.stop();
      await dtmf.stop();
    },
  };
}

export function lockoutRoutes(lockouts: DialInLockouts): ApiRoute[] {
  return [
    {
      method: 'GET',
      pattern: /^\/v1\/dialin\/lockouts$/,
      handler: async ({ res }) => send(res, 200, { lockouts: await lockouts.list(), policy: lockouts.policy }),
    },
    {
      method: 'DELETE',
      pattern: /^\/v1\/dialin\/lockouts\/([^/]+)\/([^/]+)$/,
      handler: async ({ res, params }) => {
        const kind = params[0];
        if (kind !== 'id' && kind !== 'caller') throw new HttpError(400, 'validation_failed', 'kind must be id or caller', [{ field: 'kind', message: 'must be id or caller' }]);
        let value: string;
        try {
          value = decodeURIComponent(params[1]!);
        } catch {
          value = '';
        }
        if (!DialInLockouts.isValidValue(value)) throw new HttpError(400, 'validation_failed', 'value must be a dial-in ID or a phone number', [{ field: 'value', message: 'must be a dial-in ID or a phone number' }]);
        if (!(await lockouts.clear(kind as LockoutKind, value))) throw new HttpError(404, 'not_found', 'no failures recorded for it');
        send(res, 204);
      },
    },
  ];
}
