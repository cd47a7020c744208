/**
 * Redis key layout (docs/user-model.md). Everything about one user shares the hash tag
 * `{u:<id>}`, so a Redis Cluster keeps it in one slot and one Lua script can touch all of it
 * (user record, bindings, nc counters, failure counter, ban). Unique indexes are single keys
 * claimed with SET NX (atomic on their own, so they need no cross-slot transaction).
 */
export const KEY_PREFIX = 'dc';

export const keys = {
  user: (id: string) => `${KEY_PREFIX}:{u:${id}}:user`,
  bindings: (id: string) => `${KEY_PREFIX}:{u:${id}}:bindings`,
  nonceCount: (id: string, nonce: string) => `${KEY_PREFIX}:{u:${id}}:nc:${nonce}`,
  userFailures: (id: string) => `${KEY_PREFIX}:{u:${id}}:fails`,
  userBan: (id: string) => `${KEY_PREFIX}:{u:${id}}:ban`,
  /** login -> id */
  loginIndex: (login: string) => `${KEY_PREFIX}:login:${login.toLowerCase()}`,
  /** dial-in ID -> id */
  dialInIndex: (dialInId: string) => `${KEY_PREFIX}:dialin:${dialInId}`,
  /** internal number -> id */
  internalNumberIndex: (number: string) => `${KEY_PREFIX}:ext:${number}`,
  /** ZSET of all user ids, all scores 0: ZRANGE BYLEX gives stable cursor pagination. */
  userIds: () => `${KEY_PREFIX}:users`,
  sourceFailures: (ip: string) => `${KEY_PREFIX}:ipfails:${ip}`,
  /** ZSET ip -> ban end (ms since epoch). */
  sourceBans: () => `${KEY_PREFIX}:bans:ip`,
  /**
   * HASH "transport|connectionMethod" -> live bindings expiring in that minute (minute = ms since
   * epoch / 60,000): the registration census, kept with HINCRBY outside any user's slot.
   */
  censusBucket: (minute: number) => `${KEY_PREFIX}:census:${minute}`,
  /** JSON of the user's agent session (one per agent), claimed with SET NX. */
  agentSession: (id: string) => `${KEY_PREFIX}:{u:${id}}:agent-session`,
  /** JSON of a customer call (control API). */
  controlCall: (callId: string) => `${KEY_PREFIX}:call:${callId}`,
  controlCallRecordings: (callId: string) => `${KEY_PREFIX}:call:${callId}:recordings`,
  /** ZSET call id -> created (ms): the calls GET /v1/calls lists. */
  controlCalls: () => `${KEY_PREFIX}:calls`,
  /** ZSET of failed dial-in login times (ms) for an entered ID or a caller number (sliding window, expires with it). */
  dialInFailures: (kind: 'id' | 'caller', value: string) => `${KEY_PREFIX}:dialin-failed-at:${kind}:${value}`,
  /** Which instance owns a dial-in call (rtpengine call-id): DTMF events reaching another instance are forwarded. */
  dialInCall: (mediaCallId: string) => `${KEY_PREFIX}:dialin-call:${mediaCallId}`,
  /** A live core instance (expires unless refreshed): where its API listens. */
  instance: (instanceId: string) => `${KEY_PREFIX}:instance:${instanceId}`,
};

/** The pub/sub channel for change, kick and ban events. */
export const EVENTS_CHANNEL = `${KEY_PREFIX}:events`;
