// Types of @hookwire/guest (src/guest.js): the hook inputs and verdicts of
// wit/policy.wit (`hookwire:policy@0.1.0`) as a JavaScript plugin sees them,
// with every `json` field already parsed.
//
//   /** @type {import('@hookwire/guest').OnMsg} */
//   export function onMsg(ctx, ev) { ... }

/**
 * Any JSON value. An integer a double cannot hold exactly (a 64-bit id)
 * arrives as a BigInt, which `JSON.stringify` writes back digit for digit.
 */
export type Json = null | boolean | number | bigint | string | Json[] | { [key: string]: Json };

/** Who the hook runs for. Always one tenant: a plugin never sees another. */
export interface Context {
  tenant: string;
  /** socket id, when the hook runs for a socket */
  sid?: string;
  /** authenticated uid, once known (absent during authenticate) */
  uid?: string;
  /** the `deviceId` handshake query parameter */
  device?: string;
}

/** The `authenticate` event payload or the socket.io handshake `auth` object. */
export interface AuthRequest {
  uid?: string;
  token?: string;
  /** the whole payload as sent (e.g. `app`, `timestamp`, `sign`) */
  payload: Json;
  /** raw handshake query string, without `?` */
  query: string;
  /** the first value of `name` in `query`, decoded */
  queryParam(name: string): string | undefined;
}

export interface JoinRequest {
  room: string;
  /** a dummy watches and syncs but is invisible and may not send `msg` */
  dummy: boolean;
}

export interface MsgEvent {
  /** the room the sender is in */
  room: string;
  /** the message object as sent (long or short form) */
  msg: Json;
}

/** What `onRawMsg` receives: the message still JSON text. */
export interface RawMsgEvent {
  room: string;
  msg: string;
  /** the parsed event */
  parse(): MsgEvent;
  /** false only when `needle` cannot be in any key or string of the message */
  mightContain(needle: string): boolean;
}

export interface PushRequest {
  rooms: string[];
  event: string;
  /** the event arguments, a JSON array */
  args: Json;
}

export type StorageMode = 'insert' | 'update' | 'ignore';

export type MsgVerdict =
  | { tag: 'pass' }
  | { tag: 'drop'; val: string }
  | { tag: 'rewrite'; val: Json }
  | { tag: 'reply'; val: { event: string; data: Json } }
  | { tag: 'redirect'; val: { rooms: string[]; users: string[]; msg?: Json } };
export type AuthVerdict =
  | { tag: 'allow'; val: { uid: string; rooms: string[]; claims: { [key: string]: Json } } }
  | { tag: 'deny'; val: string }
  | { tag: 'defer' };
export type JoinVerdict = { tag: 'allow' } | { tag: 'deny'; val: string };
export type PushRoute = { tag: 'deliver'; val: string[] } | { tag: 'reject'; val: string };

/** The hooks a plugin may export; `describe` reports exactly the ones it does. */
export type Authenticate = (ctx: Context, req: AuthRequest) => AuthVerdict;
export type OnJoin = (ctx: Context, req: JoinRequest) => JoinVerdict;
export type OnMsg = (ctx: Context, ev: MsgEvent) => MsgVerdict;
export type OnRawMsg = (ctx: Context, ev: RawMsgEvent) => MsgVerdict;
export type StorageModeHook = (ctx: Context, ev: MsgEvent, proposed: StorageMode) => StorageMode;
export type RoutePush = (ctx: Context, req: PushRequest) => PushRoute;

// verdicts
/** on-msg: relay as is. */
export function pass(): MsgVerdict;
/** on-msg: refuse with a reason the sender sees (not relayed, not stored). */
export function drop(reason: string): MsgVerdict;
/** on-msg: relay (and store) this object instead. */
export function rewrite(msg: Json): MsgVerdict;
/** on-msg: send `data` as `event` to the sender only. */
export function reply(event: string, data?: Json): MsgVerdict;
/** on-msg: relay to these rooms / users instead, optionally with another payload. */
export function redirect(to: { rooms?: (string | number)[]; users?: (string | number)[]; msg?: Json }): MsgVerdict;
export function toUsers(users: (string | number)[], msg?: Json): MsgVerdict;
export function toRooms(rooms: (string | number)[], msg?: Json): MsgVerdict;
/** authenticate: accept the socket as `uid`. */
export function allow(
  uid: string | number,
  opts?: { rooms?: (string | number)[]; claims?: { [key: string]: Json } },
): AuthVerdict;
/** on-join: let the socket join. */
export function allow(): JoinVerdict;
/** authenticate / on-join: refuse with the reason the client sees. */
export function deny(reason: string): AuthVerdict & JoinVerdict;
/** authenticate: not this plugin's business. */
export function defer(): AuthVerdict;
/** route-push: deliver to these rooms. */
export function deliver(rooms: (string | number)[]): PushRoute;
/** route-push: refuse the push. */
export function reject(reason: string): PushRoute;
export const INSERT: 'insert';
export const UPDATE: 'update';
export const IGNORE: 'ignore';

// helpers
/** Ids as hookwire compares them: non-empty strings, numbers in decimal. */
export function idString(v: unknown): string | undefined;
export function queryParam(query: string, name: string): string | undefined;
/** JSON.parse as the hook inputs are parsed (integers kept exact). */
export function parseJson(text: string): Json;
/** md5 of a string (its UTF-8) or bytes, lower-case hex. */
export function md5Hex(input: string | Uint8Array): string;
export function encodeUtf8(s: string): Uint8Array;
export function decodeUtf8(bytes: Uint8Array): string;

// host imports (call them inside hooks, not at the top level of the file)
export const log: Record<'trace' | 'debug' | 'info' | 'warn' | 'error', (...parts: unknown[]) => void>;
/** The manifest's `config`, parsed once per instance; `null` when none. */
export function config(): Json;
/** `build(config())`, once per instance. */
export function configState<T>(build: (config: Json) => T, key?: unknown): T;
export const kv: {
  get(key: string): Uint8Array | undefined;
  getText(key: string): string | undefined;
  getJson(key: string): Json | undefined;
  set(key: string, value: string | Uint8Array, ttlMs?: number): void;
  setJson(key: string, value: Json, ttlMs?: number): void;
  /** atomic add, returns the new value; the TTL applies when the key is created */
  incr(key: string, delta?: number, ttlMs?: number): number;
};
/** Wall clock, unix ms. */
export function nowMs(): number;
export function randomBytes(len: number): Uint8Array;
export interface HttpResponse {
  status: number;
  ok: boolean;
  headers: [string, string][];
  body: Uint8Array;
  header(name: string): string | undefined;
  text(): string;
  json(): Json;
}
export const http: {
  /** Throws when no response arrived (host not allowed, connection error, timeout). */
  fetch(req: {
    method?: string;
    url: string;
    headers?: Record<string, string> | [string, string][];
    body?: string | Uint8Array;
  }): HttpResponse;
};
