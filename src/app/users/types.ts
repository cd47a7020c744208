/**
 * The user model (docs/user-model.md): what an administrator sets per user and the core
 * enforces. `UserRecord` is what Redis holds (with credential hashes); `PublicUser` is the only
 * shape that leaves the process through the admin API (no password, HA1, PIN hash or PBX
 * password, ever).
 */

export const CONNECTION_METHODS = ['webrtc', 'sip-phone', 'sip-address', 'dial-in'] as const;
export type ConnectionMethod = (typeof CONNECTION_METHODS)[number];

export const TRANSFER_CID_TYPES = ['campaign', 'contact'] as const;
export type TransferCidType = (typeof TRANSFER_CID_TYPES)[number];

/** Number masking: the customer's number is shown with all but the last `keepLastDigits` digits hidden. */
export interface MaskingSettings {
  enabled: boolean;
  keepLastDigits: number;
}

/** One outbound dial-plan rule: if `pattern` (a RegExp source) matches, rewrite with `replacement`, then allow or deny. */
export interface DialPlanRule {
  pattern: string;
  replacement?: string;
  action: 'allow' | 'deny';
}

/** A named dial plan (defined elsewhere) or inline rules, tried in order. */
export type DialPlan = { name: string } | { rules: DialPlanRule[] };

/** Where the core sends an INVITE for a `sip-address` user, and the credentials it answers the PBX's challenges with. */
export interface SipAddressSettings {
  uri: string;
  username: string | null;
  /** Stored (needed to answer 401/407 from the PBX); never returned by the API. */
  password: string | null;
}

export interface DialInSettings {
  id: string;
  /** scrypt$<N>$<r>$<p>$<salt b64>$<hash b64> (see secrets.ts). */
  pinHash: string;
}

/** Digest HA1 = H(login:realm:password) per algorithm (RFC 7616 §3.4.2); the password itself is never stored. */
export interface DigestCredentials {
  realm: string;
  ha1Md5: string;
  ha1Sha256: string;
  ha1Sha512_256: string;
}

/** Fields an administrator sets (create/patch), secrets excluded. */
export interface UserSettings {
  username: string;
  displayName: string | null;
  active: boolean;
  connectionMethod: ConnectionMethod;
  /** SIP login (station number), unique across users; the digest username. */
  login: string;
  /** IPv4/IPv6 addresses and CIDR ranges; empty = any source. */
  allowedAddresses: string[];
  /** Simultaneous registrations (sessions); 0 = unlimited. */
  maxSessions: number;
  /** A registration or connection is not kept past this without re-authentication (12 h default). */
  sessionTimeoutSeconds: number;
  manualDial: boolean;
  restrictManualCalls: boolean;
  threeWay: boolean;
  transfer: boolean;
  callerIdName: string | null;
  callerIdNumber: string | null;
  transferCidType: TransferCidType;
  masking: MaskingSettings;
  maskingExcluded: boolean;
  dialPlan: DialPlan | null;
  internalNumber: string | null;
  /** Prompt language for dial-in and announcements (BCP 47 tag), null = system default. */
  language: string | null;
  /** Agent sessions: a short announcement to the agent when a customer is put through. */
  callConnectAnnouncement: boolean;
  /** Agent sessions: a beep to the agent when the customer hangs up. */
  hangupBeep: boolean;
  /** Record calls this agent takes or places (rtpengine recording), from answer to hang-up. */
  recordDirectCalls: boolean;
}

export interface UserRecord extends UserSettings {
  id: string;
  credentials: DigestCredentials | null;
  sipAddress: SipAddressSettings | null;
  dialIn: DialInSettings | null;
  createdAt: string;
  updatedAt: string;
  /** Incremented on every change; caches and the registrar's Redis script compare it. */
  version: number;
}

/**
 * What the registrar needs of a user, and all the REGISTER path keeps of one in memory
 * (UserCache): identity, the rules it enforces and the digest HA1s.
 */
export interface Registrant {
  id: string;
  login: string;
  version: number;
  active: boolean;
  connectionMethod: ConnectionMethod;
  allowedAddresses: string[];
  maxSessions: number;
  sessionTimeoutSeconds: number;
  credentials: DigestCredentials | null;
}

/** The fields of a UserRecord that make a Registrant (read with one HMGET). */
export const REGISTRANT_FIELDS = [
  'id', 'login', 'version', 'active', 'connectionMethod', 'allowedAddresses', 'maxSessions', 'sessionTimeoutSeconds', 'credentials',
] as const satisfies ReadonlyArray<keyof Registrant>;

export interface PublicUser extends UserSettings {
  id: string;
  hasPassword: boolean;
  sipAddress: { uri: string; username: string | null; hasPassword: boolean } | null;
  dialIn: { id: string; hasPin: boolean } | null;
  createdAt: string;
  updatedAt: string;
  version: number;
}

export const DEFAULT_SESSION_TIMEOUT_SECONDS = 43_200;

export function toPublicUser(user: UserRecord): PublicUser {
  const { credentials, sipAddress, dialIn, ...rest } = user;
  return {
    ...rest,
    hasPassword: credentials !== null,
    sipAddress: sipAddress
      ? { uri: sipAddress.uri, username: sipAddress.username, hasPassword: sipAddress.password !== null }
      : null,
    dialIn: dialIn ? { id: dialIn.id, hasPin: true } : null,
  };
}

/** A validation error naming the offending field, e.g. { field: 'allowedAddresses[1]', message: 'not an IP address or CIDR' }. */
export interface FieldError {
  field: string;
  message: string;
}
