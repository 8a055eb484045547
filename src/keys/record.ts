/** What the stores keep about a key. The key itself is never part of it. */
export interface KeyRecord {
  /** Public identifier (`key_` + 24 hex), safe to log and to show. */
  readonly id: string;
  /** SHA-256 of the full key, hex; the lookup key. Never logged or listed. */
  readonly hash: string;
  /** First characters of the key, in clear, so people can tell keys apart. */
  readonly prefix: string;
  readonly label: string;
  readonly plan: string;
  readonly status: KeyStatus;
  /** Epoch milliseconds. */
  readonly createdAt: number;
  readonly lastUsedAt: number | undefined;
  /** After this instant (epoch ms) the key is refused like a revoked one. */
  readonly expiresAt: number | undefined;
  readonly metadata: Readonly<Record<string, string>> | undefined;
  /** Id of the key that replaced this one in a rotation. */
  readonly rotatedTo: string | undefined;
  /** The key's own limits: rule name → window → limit (overrides its plan's). */
  readonly limits?: Readonly<Record<string, Readonly<Record<string, number>>>>;
}

export type KeyStatus = "active" | "revoked";

/** Fields an update may change. */
export type KeyPatch = Partial<
  Pick<KeyRecord, "status" | "expiresAt" | "label" | "plan" | "metadata" | "rotatedTo">
>;

/** Broadcast to every instance so caches drop a key at once. */
export interface KeyEvent {
  readonly type: "revoked" | "deleted" | "rotated" | "updated";
  readonly id: string;
  readonly hash: string;
}

export interface KeyFilter {
  /** Display prefix starts with this. */
  prefix?: string;
  /** Label contains this (case-insensitive). */
  label?: string;
  plan?: string;
  status?: KeyStatus;
}

export interface KeyPage {
  readonly items: readonly KeyRecord[];
  /** Pass back as `cursor` for the next page; absent on the last page. */
  readonly nextCursor: string | undefined;
}

/** Usage counted per key and UTC day, from the batched last-used flush. */
export interface UsageDay {
  readonly date: string;
  readonly requests: number;
}

export interface Touch {
  readonly id: string;
  readonly hash: string;
  readonly lastUsedAt: number;
  /** Successful requests since the previous flush. */
  readonly count: number;
}

export function isUsable(record: KeyRecord, now: number): boolean {
  return record.status === "active" && (record.expiresAt === undefined || record.expiresAt > now);
}

export function matchesFilter(record: KeyRecord, filter: KeyFilter): boolean {
  if (filter.prefix !== undefined && !record.prefix.startsWith(filter.prefix)) return false;
  if (filter.label !== undefined && !record.label.toLowerCase().includes(filter.label.toLowerCase()))
    return false;
  if (filter.plan !== undefined && record.plan !== filter.plan) return false;
  if (filter.status !== undefined && record.status !== filter.status) return false;
  return true;
}

export function utcDay(epochMs: number): string {
  return new Date(epochMs).toISOString().slice(0, 10);
}

/** Paging position in creation order (oldest first): zero-padded created_at, then id, so it sorts as text. */
export function cursorOf(record: KeyRecord): string {
  return `${String(record.createdAt).padStart(15, "0")}:${record.id}`;
}

/** The `days` UTC days ending with the day of `now`, oldest first (usage reports). */
export function lastDays(days: number, now: number): string[] {
  const out: string[] = [];
  for (let i = days - 1; i >= 0; i--) out.push(utcDay(now - i * 86_400_000));
  return out;
}
