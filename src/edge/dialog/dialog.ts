/**
 * Dialog state, RFC 3261 section 12: identified by Call-ID, local tag and remote tag, with the
 * route set, remote target and CSeq spaces needed to build in-dialog requests (12.2.1.1) and to
 * check incoming ones (12.2.2). The drachtio dialog id is `<Call-ID>;from-tag=<tag of the From of
 * the initial request>` (drachtio-server SipDialog::getDialogId), so it names both roles alike.
 */
import type { SendTarget } from '../transport/index.js';

export type DialogRole = 'uac' | 'uas';

export interface Dialog {
  readonly id: string;
  readonly role: DialogRole;
  readonly callId: string;
  readonly localTag: string;
  remoteTag: string;
  /** From (uac) or To (uas) header value as we send it, tag included */
  localParty: string;
  /** To (uac) or From (uas) header value as we send it, tag included */
  remoteParty: string;
  localSeq: number;
  remoteSeq?: number;
  /** remote target URI: the peer's Contact, updated by target refresh requests (12.2) */
  remoteTarget: string;
  /** Route header values in the order we send them (12.1.1 / 12.1.2) */
  routeSet: string[];
  /** where the dialog-creating request came from / went to: in-dialog requests reuse the flow (NAT, WS) */
  flow: SendTarget;
  /** CSeq number of the last INVITE we sent in this dialog (ACK reuses it, 13.2.2.4) */
  lastInviteSeq: number;
  /** our Contact (for target refresh requests and responses) */
  localContact: string;
  /** drachtio app connection id that owns the dialog */
  ownerAppId: string;
  state: 'early' | 'confirmed' | 'terminated';
  /** UAC: the ACK we sent for the 2xx, resent when the 2xx is retransmitted (13.2.2.4) */
  lastAck?: { data: Buffer; target: SendTarget; inviteSeq: number };
  /** UAS: CSeq of the INVITE whose 2xx awaits its ACK (13.3.1.4); retransmission is the transaction layer's */
  awaitingAckSeq?: number;
}

export function dialogIdFor(callId: string, fromTag: string): string {
  return `${callId};from-tag=${fromTag}`;
}

/** Dialogs by drachtio id and by (Call-ID, local tag), which is what an incoming request carries in its To tag. */
export class DialogStore {
  private readonly byId = new Map<string, Dialog>();
  private readonly byLocal = new Map<string, Dialog>();
  private readonly byCallId = new Map<string, Dialog>();

  constructor(private readonly maxDialogs = 100_000) {}

  get size(): number {
    return this.byId.size;
  }

  get full(): boolean {
    return this.byId.size >= this.maxDialogs;
  }

  add(dialog: Dialog): void {
    this.byId.set(dialog.id, dialog);
    this.byLocal.set(`${dialog.callId}\n${dialog.localTag}`, dialog);
    this.byCallId.set(dialog.callId, dialog);
  }

  getById(id: string): Dialog | undefined {
    return this.byId.get(id);
  }

  /** 12.2.2: an in-dialog request's To tag is our local tag, its From tag the remote tag. */
  findForIncoming(callId: string, toTag: string): Dialog | undefined {
    return this.byLocal.get(`${callId}\n${toTag}`);
  }

  findByCallId(callId: string): Dialog | undefined {
    return this.byCallId.get(callId);
  }

  remove(dialog: Dialog): void {
    dialog.state = 'terminated';
    dialog.awaitingAckSeq = undefined;
    if (this.byId.get(dialog.id) === dialog) this.byId.delete(dialog.id);
    const key = `${dialog.callId}\n${dialog.localTag}`;
    if (this.byLocal.get(key) === dialog) this.byLocal.delete(key);
    if (this.byCallId.get(dialog.callId) === dialog) this.byCallId.delete(dialog.callId);
  }

  *ownedBy(appId: string): IterableIterator<Dialog> {
    for (const d of this.byId.values()) if (d.ownerAppId === appId) yield d;
  }

  all(): IterableIterator<Dialog> {
    return this.byId.values();
  }
}
