// Type declarations of @switchboard/client (switchboard.js).

/** The subset of the WHATWG WebSocket that the client uses. */
export interface WebSocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: ((ev: any) => any) | null;
  onmessage: ((ev: { data: any }) => any) | null;
  onclose: ((ev: { code: number; reason: string }) => any) | null;
  onerror: ((ev: any) => any) | null;
}

/** A WebSocket constructor: the global one, or the `ws` package's. */
export type WebSocketConstructor = new (url: string) => WebSocketLike;

/** Where the last `seq` seen is kept across page loads (`localStorage` by default in browsers). */
export interface SeqStorage {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
}

export interface ClientOptions {
  /** The server's WebSocket URL. Default in a browser: ws(s)://location.host/ws; required elsewhere. */
  url?: string;
  /** The action to join (1–64 of A-Z a-z 0-9 _ . : -). */
  action: string;
  /** Sent as `user_id`. Without it (and without auth) the server uses the connection id. */
  userId?: string;
  /** A fixed JWT sent with `online`. */
  token?: string;
  /**
   * Returns a JWT (may be async). Called before every connection attempt
   * (`reason: "connect"`) and `refreshBefore` ms before the token's `exp`
   * (`reason: "refresh"`); then `token` is not used.
   */
  getToken?: (info: { reason: "connect" | "refresh" }) => string | Promise<string>;
  /** Ms before the token's expiry to refresh it (at most half its remaining life). Default 60000. */
  refreshBefore?: number;
  /** Upper bound of the first reconnect delay, ms. Default 1000. */
  minDelay?: number;
  /** Cap of reconnect delays, ms. Default 30000. */
  maxDelay?: number;
  /** Ms from dialling to `ready`; then the attempt counts as failed. Default 10000. */
  connectTimeout?: number;
  /** Ms between `ping`s; no `pong` by the next one reconnects. 0 turns pings off. Default 25000. */
  pingInterval?: number;
  /** Send `presence` after every `ready`. Default true. */
  autoPresence?: boolean;
  /** Ms from `send()` to its ack; then the send fails. Default 30000. */
  sendTimeout?: number;
  /** Messages that may wait for the connection or for their ack. Default 1000. */
  outboxLimit?: number;
  /** Keeps the last `seq` seen; `null` keeps it in memory only. Default: `localStorage` when there is one. */
  storage?: SeqStorage | null;
  /** The WebSocket implementation. Default `globalThis.WebSocket`; on Node before 22 pass the `ws` package's. */
  WebSocket?: WebSocketConstructor | (new (url: string, ...rest: any[]) => any);
}

export type ConnectionState = "idle" | "connecting" | "online" | "reconnecting" | "offline";

/** An error frame from the server (SPEC section 4). */
export interface ServerError {
  type: "error";
  code: string;
  message?: string;
  id?: string | number;
  to?: unknown;
}

export interface StateDetail {
  state: ConnectionState;
  /** connecting, reconnecting: the attempt number. */
  attempt?: number;
  /** reconnecting: the wait before the next dial, ms. */
  delay?: number;
  /** reconnecting: when the next dial happens, epoch ms. */
  at?: number;
  /** reconnecting, offline: the WebSocket close code. */
  code?: number;
  /** reconnecting, offline: the close reason, or why the client stopped ("closed" after close()). */
  reason?: string;
  /** reconnecting, offline: the server's error that ended the connection. */
  error?: ServerError;
  /** online: the `ready` frame. */
  session?: Ready;
}

export interface Ready {
  type: "ready";
  connection_id: string;
  user_id: string;
  action: string;
  /** The latest number the user's mailbox gave (absent without a mailbox). */
  seq?: number;
  /** Messages after the resume point are no longer kept. */
  gap?: boolean;
}

/** A message as delivered: the sender's fields, with `from`, `action`, `ts` set by the server. */
export interface Message {
  type: string;
  /** The sender's user id; absent for messages from the server API. */
  from?: string;
  action: string;
  /** Server time, Unix ms. */
  ts: number;
  /** Set on a direct message: the recipient. */
  to?: string;
  /** Set on a direct message by a server with a mailbox. */
  seq?: number;
  id?: string | number;
  text?: string;
  [field: string]: unknown;
}

export interface Ack {
  type: "ack";
  id: string | number;
  /** Connections the message was handed to, across all nodes. */
  delivered?: number;
  /** The recipient's mailbox number of a direct message (with a mailbox). */
  seq?: number;
}

export interface Presence {
  type: "presence";
  action: string;
  users: string[];
}

export interface PresenceEvent {
  type: "join" | "leave";
  user_id: string;
  action: string;
}

export interface Status {
  type: "status";
  status: string;
  reason?: string;
}

export interface Refreshed {
  type: "refreshed";
  /** The new token's expiry, Unix seconds. */
  exp: number;
}

export interface Gap {
  /** The `seq` the client resumed from. */
  since: number;
  /** The mailbox's latest `seq`. */
  seq: number;
}

export interface EventMap {
  state: StateDetail;
  ready: Ready;
  message: Message;
  ack: Ack;
  error: ServerError;
  presence: Presence;
  join: PresenceEvent;
  leave: PresenceEvent;
  status: Status;
  refreshed: Refreshed;
  gap: Gap;
  /** The answer to `{"type":"blocks"}`: the users this user blocks. */
  blocks: { type: "blocks"; users: string[] };
  outbox: { size: number };
}

/** A message to send: any JSON object; `type` defaults to "message", `id` to a fresh one. */
export interface Outgoing {
  type?: string;
  to?: string;
  id?: string | number;
  text?: string;
  [field: string]: unknown;
}

/** The promise of a send: resolves to the ack, rejects with a SwitchboardError. */
export interface SendResult extends Promise<Ack> {
  /** The message's id, as in its ack. */
  readonly id: string | number;
}

/**
 * How a send fails. `code` is the server's error code (e.g. "user_offline",
 * "invalid_to", "rate_limited") or one of the client's: "timeout",
 * "connection_lost", "closed", "outbox_full", "duplicate_id",
 * "not_connected".
 */
export class SwitchboardError extends Error {
  constructor(code: string, message?: string, detail?: ServerError);
  readonly code: string;
  /** The server's error frame, when the server sent one. */
  readonly detail?: ServerError;
}

/** A listener as EventTarget takes it (declared here so Node-only projects need no DOM types). */
export type Listener = ((ev: Event) => void) | { handleEvent(ev: Event): void } | null;
/** addEventListener's options, as EventTarget takes them. */
export type ListenerOptions = boolean | { capture?: boolean; once?: boolean; passive?: boolean; signal?: AbortSignal };

export class SwitchboardClient extends EventTarget {
  constructor(options: ClientOptions);
  readonly options: Readonly<ClientOptions>;
  readonly state: ConnectionState;
  /** The last `ready`, or null before the first. */
  readonly session: Ready | null;
  /** The highest `seq` received (0 before any). */
  readonly lastSeq: number;
  /** The messages waiting for the connection or for their ack. */
  readonly outbox: ReadonlyArray<{ id: string | number; message: Outgoing; sent: boolean }>;

  connect(): void;
  /** While reconnecting: dial now instead of waiting. */
  reconnect(): void;
  close(): void;
  send(message: Outgoing): SendResult;
  direct(to: string, message: Outgoing): SendResult;
  presence(): void;
  read(seq?: number): Promise<Ack | null>;
  refresh(token: string): void;
  sendRaw(obj: object): void;
  newId(): string;

  /** Calls fn with each event's detail; returns a function that stops it. */
  on<K extends keyof EventMap>(type: K, fn: (detail: EventMap[K]) => void): () => void;

  addEventListener<K extends keyof EventMap>(
    type: K,
    listener: (ev: CustomEvent<EventMap[K]>) => void,
    options?: ListenerOptions,
  ): void;
  addEventListener(type: string, listener: Listener, options?: ListenerOptions): void;
  removeEventListener<K extends keyof EventMap>(
    type: K,
    listener: (ev: CustomEvent<EventMap[K]>) => void,
    options?: boolean | { capture?: boolean },
  ): void;
  removeEventListener(type: string, listener: Listener, options?: boolean | { capture?: boolean }): void;
}

/** The wait before reconnect attempt `attempt` (from 0): uniform in [0, min(max, min·2^attempt)). */
export function backoffDelay(attempt: number, min?: number, max?: number, random?: () => number): number;

/** A JWT's `exp` in Unix ms (0 when it has none); the signature is not checked. */
export function tokenExpiry(token: string): number;

/** ws(s)://location.host/ws in a browser, undefined elsewhere. */
export function defaultURL(): string | undefined;
