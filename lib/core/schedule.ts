/**
 * Cron schedules: parsing, time-zone validation and fire-time computation. Pure: no I/O, no clock
 * (every function that needs "now" takes it as a parameter), no module-level mutable state.
 *
 * ## Accepted syntax
 *
 * - 5 fields `minute hour day-of-month month day-of-week`, or 6 fields with a leading `second`.
 *   Fields are separated by any run of spaces/tabs; leading/trailing whitespace is ignored.
 * - Each field is a comma-separated list of items; an item is `*`, `*\/step`, `N`, `N-M` or `N-M/step`.
 *   Ranges: second 0-59, minute 0-59, hour 0-23, day-of-month 1-31, month 1-12 (or JAN-DEC),
 *   day-of-week 0-7 (or SUN-SAT; 0 and 7 are both Sunday). Names are case-insensitive, three
 *   letters only. A range ending in the name SUN (e.g. `FRI-SUN`) ends at 7.
 * - Aliases (case-insensitive): @yearly = @annually = `0 0 1 1 *`, @monthly = `0 0 1 * *`,
 *   @weekly = `0 0 * * 0`, @daily = @midnight = `0 0 * * *`, @hourly = `0 * * * *`.
 *
 * ## Refused (FieldError("schedule", ...))
 *
 * - Not 5 or 6 fields (counted here, before croner sees the expression), the empty string.
 * - Any character but printable ASCII, spaces and tabs: a newline, a carriage return or another
 *   control character, and non-ASCII spaces (U+00A0, U+2028 ...), anywhere in the expression, even
 *   at its ends (`"*\n* * * *"` is not read as five fields; a stored schedule is one line).
 * - Out-of-range values, reversed ranges (`5-1`, `7-0`: we do not wrap around; write `5-7` or
 *   `FRI-SUN`), step 0, a step larger than the number of values in the field (60/60/24/31/12/7),
 *   a step after a single value (`5/15`: Quartz-style, not Vixie cron; write `5-59/15`), a bare
 *   `*` inside a list (`*,5`), empty list items, names in fields other than month/day-of-week.
 * - `@reboot` (a distributed scheduler has no boot event) and unknown `@aliases`.
 * - croner-only / Quartz extensions are deliberately NOT supported: `L` (last day), `W` (nearest
 *   weekday), `#` (nth weekday), `?` (croner substitutes the *current* time for it, which would make
 *   the schedule depend on when it was parsed). They are refused with a message naming them.
 * - Schedules that can never fire (e.g. `0 0 30 2 *`, `0 0 31 4 *`).
 *
 * ## Day-of-month / day-of-week (crontab(5))
 *
 * A field is a *wildcard* field when one of its items starts with `*` (`*`, `*\/2`). When both
 * day-of-month and day-of-week are restricted (neither is a wildcard field) a day matches when
 * EITHER matches (`0 0 13 * FRI` = every 13th and every Friday). Otherwise both must match (so
 * `0 0 * * FRI` = Fridays, and, as in Vixie cron, `0 0 *\/2 * MON` = odd days that are Mondays).
 * Implemented with croner's `legacyMode` (true = OR, croner 9's default, verified in the tests);
 * croner only treats a literal `*` as unrestricted, so for `*\/n` we pass legacyMode=false.
 *
 * ## Daylight-saving time (follows the Vixie cron daemon)
 *
 * A schedule is *fixed-time* when neither its minute field nor its hour field is a wildcard field
 * (no item starting with `*`; single values, lists and ranges such as `30 2`, `0 9-17`, `0,30 1,2`
 * are fixed-time). Otherwise (`*\/15 * * * *`, `0 * * * *`, `* 2 * * *`, `30 *\/2 * * *`) it is a
 * *wildcard-time* schedule. The seconds field does not matter for this classification.
 *
 * 1. Spring forward (a wall-clock hour is skipped): a fixed-time job whose wall-clock time falls in
 *    the skipped interval runs ONCE, at the instant of the jump (the first instant after it): e.g.
 *    `30 2 * * *` in America/New_York on 2025-03-09 runs at 03:00 EDT = 07:00Z. Several skipped
 *    times of the same job collapse into that one run. A wildcard-time job simply has no fires in
 *    the skipped interval.
 * 2. Fall back (a wall-clock hour is repeated): a fixed-time job whose wall-clock time falls in the
 *    repeated interval runs ONCE, in the first pass: `30 1 * * *` in America/New_York on 2025-11-02
 *    runs at 01:30 EDT = 05:30Z and not again at 01:30 EST = 06:30Z.
 * 3. Wildcard-time jobs follow elapsed real time: in the repeated interval they fire in both passes
 *    (`*\/15 * * * *` fires at 05:00Z ... 05:45Z and again at 06:00Z ... 06:45Z on 2025-11-02 in
 *    New York); no instant is ever returned twice.
 *
 * All returned fire times are distinct and ascending, in epoch milliseconds (whole seconds).
 *
 * ## Implementation and croner 9.1.0
 *
 * croner matches on a *naive* wall clock (we run it with utcOffset 0, which has no DST) and we map
 * each matching wall-clock time to real instants with the rules above, using Intl for offsets.
 * croner's own `timezone` option is not used because in 9.1.0 it gets DST wrong (see the tests):
 * spring-forward fixed-time jobs are shifted by the gap (`30 2` → 03:30 EDT instead of 03:00);
 * fall-back fixed-time jobs run in the second pass in Europe/London (00:30Z expected, 01:30Z
 * given); wildcard jobs lose the whole second pass in New York and the whole first pass in London;
 * and `nextRun` from an instant inside New York's second pass returns an EARLIER instant. It is
 * also ~100x slower (≈140 µs per nextRun vs ≈1.5 µs with a fixed offset).
 *
 * Assumption: a zone has at most one offset transition within any 48 hours (true of the IANA data
 * for all zones in practice). Supported years: 1970-2999 (croner stops searching at year 3000):
 * an instant given from outside (a preview's `from`) is checked with parseInstant.
 */
import { Cron } from "croner";
import { FieldError } from "./errors";

/** A validated schedule. Create with parseSchedule and keep it: it caches the croner matcher. */
export interface ParsedSchedule {
	/** The expression as given, trimmed. */
	readonly source: string;
	/** Normalized 6-field pattern (seconds first, names replaced by numbers) given to croner. */
	readonly pattern: string;
	/** True when the source had a seconds field. */
	readonly hasSeconds: boolean;
	/** DST class, see the module comment. */
	readonly fixedTime: boolean;
	/** True when day-of-month and day-of-week are both restricted (a day matches if either does). */
	readonly domOrDow: boolean;
	/** croner matcher on the naive wall clock (utcOffset 0). Internal; do not schedule with it. */
	readonly matcher: Cron;
}

/** A validated time zone with a cached formatter. Create with loadTimeZone and keep it. */
export interface TimeZone {
	readonly name: string;
	/** UTC offset in ms (wall clock minus UTC) in effect at the given instant. */
	offsetAt(ms: number): number;
}

export const SCHEDULE_ALIASES: Readonly<Record<string, string>> = Object.freeze({
	"@yearly": "0 0 1 1 *",
	"@annually": "0 0 1 1 *",
	"@monthly": "0 0 1 * *",
	"@weekly": "0 0 * * 0",
	"@daily": "0 0 * * *",
	"@midnight": "0 0 * * *",
	"@hourly": "0 * * * *",
});

const MAX_EXPR_LENGTH = 1000;

/** The first and the last instant (epoch ms) fire times are computed from: 1970-01-01 to 2999-12-31 (UTC). */
export const MIN_INSTANT_MS = Date.UTC(1970, 0, 1);
export const MAX_INSTANT_MS = Date.UTC(3000, 0, 1) - 1000;

/** The characters a schedule may hold: printable ASCII, spaces and tabs. */
const SCHEDULE_CHARS = /^[\x20-\x7e\t]*$/;
const DAY_MS = 86_400_000;

interface FieldSpec {
	name: string;
	min: number;
	max: number;
	/** Largest allowed step (the number of distinct values of the field). */
	maxStep: number;
	names?: readonly string[];
	/** Index of names[0]. */
	nameBase?: number;
}

const MONTH_NAMES = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"] as const;
const DAY_NAMES = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"] as const;

const FIELDS: readonly FieldSpec[] = [
	{ name: "second", min: 0, max: 59, maxStep: 60 },
	{ name: "minute", min: 0, max: 59, maxStep: 60 },
	{ name: "hour", min: 0, max: 23, maxStep: 24 },
	{ name: "day-of-month", min: 1, max: 31, maxStep: 31 },
	{ name: "month", min: 1, max: 12, maxStep: 12, names: MONTH_NAMES, nameBase: 1 },
	{ name: "day-of-week", min: 0, max: 7, maxStep: 7, names: DAY_NAMES, nameBase: 0 },
];

function fail(message: string): never {
	throw new FieldError("schedule", message);
}

interface NormalizedField {
	text: string;
	wildcard: boolean;
}

function parseValue(raw: string, spec: FieldSpec, ctx: string, rangeEnd: boolean): number {
	if (/^\d+$/.test(raw)) {
		const n = Number(raw);
		if (n < spec.min || n > spec.max) {
			fail(`${spec.name} value ${raw} is out of range ${spec.min}-${spec.max} (in ${ctx})`);
		}
		return n;
	}
	if (/^[A-Za-z]+$/.test(raw)) {
		if (/^(?:L|W|LW)$/i.test(raw)) {
			fail(`${spec.name} "${raw}": the L, W, # and ? extensions are not supported (in ${ctx})`);
		}
		if (!spec.names) fail(`${spec.name} does not accept names: "${raw}" (in ${ctx})`);
		const idx = spec.names.indexOf(raw.toUpperCase());
		if (idx < 0) {
			fail(`unknown ${spec.name} name "${raw}"; use ${spec.names[0]}-${spec.names[spec.names.length - 1]} (in ${ctx})`);
		}
		// SUN at the end of a range means 7, so FRI-SUN works.
		if (rangeEnd && spec.names === DAY_NAMES && idx === 0) return 7;
		return idx + (spec.nameBase ?? 0);
	}
	if (raw === "") fail(`${spec.name} has an empty value (in ${ctx})`);
	if (/[LW#?]/i.test(raw)) {
		fail(`${spec.name} "${raw}": the L, W, # and ? extensions are not supported (in ${ctx})`);
	}
	fail(`${spec.name} "${raw}" is not a number${spec.names ? " or name" : ""} (in ${ctx})`);
}

function parseStep(raw: string, spec: FieldSpec, ctx: string): number {
	if (!/^\d+$/.test(raw)) fail(`${spec.name} step "${raw}" is not a positive integer (in ${ctx})`);
	const n = Number(raw);
	if (n < 1) fail(`${spec.name} step must be at least 1, got ${raw} (in ${ctx})`);
	if (n > spec.maxStep) fail(`${spec.name} step ${raw} is larger than ${spec.maxStep} (in ${ctx})`);
	return n;
}

function normalizeField(field: string, spec: FieldSpec, ctx: string): NormalizedField {
	const items = field.split(",");
	const out: string[] = [];
	let wildcard = false;
	for (const item of items) {
		if (item === "") fail(`${spec.name} has an empty list item (in ${ctx})`);
		if (item === "?") fail(`"?" is not supported in ${spec.name}; use * (in ${ctx})`);
		const slash = item.indexOf("/");
		const base = slash < 0 ? item : item.slice(0, slash);
		const stepRaw = slash < 0 ? null : item.slice(slash + 1);
		if (stepRaw !== null && stepRaw.includes("/")) fail(`${spec.name} "${item}" has more than one step (in ${ctx})`);
		const step = stepRaw === null ? null : parseStep(stepRaw, spec, ctx);
		if (base === "*") {
			if (step === null && items.length > 1) fail(`${spec.name}: * cannot be combined with other list items (in ${ctx})`);
			wildcard = true;
			out.push(step === null ? "*" : `*/${step}`);
			continue;
		}
		const dash = base.indexOf("-");
		if (dash < 0) {
			if (step !== null) {
				fail(`${spec.name} "${item}": a step must follow * or a range (write */${step} or ${base}-${spec.max}/${step}) (in ${ctx})`);
			}
			out.push(String(parseValue(base, spec, ctx, false)));
			continue;
		}
		const lo = parseValue(base.slice(0, dash), spec, ctx, false);
		const hi = parseValue(base.slice(dash + 1), spec, ctx, true);
		if (lo > hi) fail(`${spec.name} range "${base}" is reversed; ranges do not wrap around (in ${ctx})`);
		out.push(step === null ? `${lo}-${hi}` : `${lo}-${hi}/${step}`);
	}
	return { text: out.join(","), wildcard };
}

/** Parse and validate a schedule expression; throws FieldError("schedule", ...). */
export function parseSchedule(expr: string): ParsedSchedule {
	if (typeof expr !== "string") fail("schedule must be a string");
	if (expr.length > MAX_EXPR_LENGTH) fail(`schedule is longer than ${MAX_EXPR_LENGTH} characters`);
	if (!SCHEDULE_CHARS.test(expr)) {
		const bad = [...expr].find((c) => !SCHEDULE_CHARS.test(c)) ?? "";
		const code = `U+${(bad.codePointAt(0) ?? 0).toString(16).toUpperCase().padStart(4, "0")}`;
		fail(`schedule must be one line of printable ASCII (fields separated by spaces or tabs); it contains ${code}`);
	}
	const source = expr.trim();
	if (source === "") fail("schedule is empty");
	const ctx = JSON.stringify(source);
	let text = source;
	if (source.startsWith("@")) {
		const lower = source.toLowerCase();
		if (lower === "@reboot") fail("@reboot is not supported: a distributed scheduler has no boot event");
		const expanded = SCHEDULE_ALIASES[lower];
		if (expanded === undefined) {
			fail(`unknown alias ${ctx}; use one of ${Object.keys(SCHEDULE_ALIASES).join(" ")}`);
		}
		text = expanded;
	}
	const parts = text.split(/\s+/);
	if (parts.length !== 5 && parts.length !== 6) {
		fail(`schedule must have 5 fields (minute hour day-of-month month day-of-week) or 6 with a leading seconds field; got ${parts.length} in ${ctx}`);
	}
	const hasSeconds = parts.length === 6;
	const six = hasSeconds ? parts : ["0", ...parts];
	const fields = six.map((f, i) => normalizeField(f, FIELDS[i], ctx));
	const fixedTime = !fields[1].wildcard && !fields[2].wildcard;
	const domOrDow = !fields[3].wildcard && !fields[5].wildcard;
	const pattern = fields.map((f) => f.text).join(" ");
	let matcher: Cron;
	try {
		matcher = new Cron(pattern, { utcOffset: 0, paused: true, legacyMode: domOrDow });
	} catch (err) {
		fail(`invalid schedule ${ctx}: ${err instanceof Error ? err.message : String(err)}`);
	}
	// Fixed reference instant (not "now"): a cron pattern repeats within 400 years.
	if (matcher.nextRun(new Date(Date.UTC(2000, 0, 1))) === null) {
		fail(`schedule ${ctx} never fires (e.g. a day that does not exist in the selected months)`);
	}
	return { source, pattern, hasSeconds, fixedTime, domOrDow, matcher };
}

/**
 * An instant given as text (ISO 8601, as Date.parse reads it) for `field`, within the supported years
 * (MIN_INSTANT_MS to MAX_INSTANT_MS); throws FieldError(field, ...).
 */
export function parseInstant(field: string, text: string): number {
	const ms = Date.parse(text);
	if (!Number.isFinite(ms)) throw new FieldError(field, `${field} must be an ISO 8601 instant`);
	if (ms < MIN_INSTANT_MS || ms > MAX_INSTANT_MS) {
		throw new FieldError(field, `${field} must be between 1970-01-01T00:00:00Z and 2999-12-31T23:59:59Z`);
	}
	return ms;
}

/**
 * A schedule read back from the database. Before schedules were refused for control characters, any
 * run of whitespace (a newline too) separated the fields and was trimmed: a stored one is read the
 * same way, so a job stored then keeps its fires. Requests go through parseSchedule.
 */
export function parseStoredSchedule(expr: string): ParsedSchedule {
	return parseSchedule(typeof expr === "string" ? expr.replace(/\s+/g, " ") : expr);
}

const TZ_SYNTAX = /^[A-Za-z][A-Za-z0-9_+-]*(?:\/[A-Za-z0-9_+-]+)*$/;

/**
 * Validate an IANA time-zone name ("UTC", "Europe/Berlin"); throws FieldError("timezone", ...).
 * Returns the name, with its case corrected when it only differed in case ("utc" → "UTC");
 * links are kept as given (Node would canonicalize "Europe/Kyiv" to "Europe/Kiev").
 */
export function validateTimezone(tz: string): string {
	return zoneFormat(tz).name;
}

/** The zone's name (see validateTimezone) and, but for UTC, a formatter of its wall-clock time. */
function zoneFormat(tz: string): { name: string; dtf: Intl.DateTimeFormat | null } {
	if (typeof tz !== "string" || tz.trim() === "") {
		throw new FieldError("timezone", 'timezone must be a non-empty IANA time zone name such as "UTC" or "Europe/Berlin"');
	}
	// The common case without ICU: a formatter costs a few hundred microseconds to build, and every
	// job view (its next run) loads its zone.
	if (tz === "UTC" || tz === "Etc/UTC") return { name: tz, dtf: null };
	if (tz.length > 64 || !TZ_SYNTAX.test(tz)) {
		throw new FieldError("timezone", `timezone ${JSON.stringify(tz.slice(0, 80))} is not an IANA time zone name (e.g. "Europe/Berlin")`);
	}
	let dtf: Intl.DateTimeFormat;
	try {
		dtf = new Intl.DateTimeFormat("en-US", {
			timeZone: tz,
			hourCycle: "h23",
			year: "numeric",
			month: "numeric",
			day: "numeric",
			hour: "numeric",
			minute: "numeric",
			second: "numeric",
		});
	} catch {
		throw new FieldError("timezone", `unknown time zone ${JSON.stringify(tz)}`);
	}
	const resolved = dtf.resolvedOptions().timeZone;
	const name = resolved.toLowerCase() === tz.toLowerCase() ? resolved : tz;
	return { name, dtf: name === "UTC" || name === "Etc/UTC" ? null : dtf };
}

/** Validate a time zone and build the offset function (with one Intl formatter, built here). */
export function loadTimeZone(tz: string): TimeZone {
	const { name, dtf } = zoneFormat(tz);
	if (dtf === null) return { name, offsetAt: () => 0 };
	return {
		name,
		offsetAt(ms: number): number {
			let y = 1970,
				mo = 1,
				d = 1,
				h = 0,
				mi = 0,
				s = 0;
			for (const p of dtf.formatToParts(ms)) {
				switch (p.type) {
					case "year":
						y = Number(p.value);
						break;
					case "month":
						mo = Number(p.value);
						break;
					case "day":
						d = Number(p.value);
						break;
					case "hour":
						h = Number(p.value) % 24;
						break;
					case "minute":
						mi = Number(p.value);
						break;
					case "second":
						s = Number(p.value);
						break;
				}
			}
			const wholeSecond = ms - (((ms % 1000) + 1000) % 1000);
			return Date.UTC(y, mo - 1, d, h, mi, s) - wholeSecond;
		},
	};
}

function toParsed(expr: string | ParsedSchedule): ParsedSchedule {
	return typeof expr === "string" ? parseSchedule(expr) : expr;
}

function toZone(tz: string | TimeZone): TimeZone {
	return typeof tz === "string" ? loadTimeZone(tz) : tz;
}

function checkMs(name: string, v: number): void {
	if (typeof v !== "number" || !Number.isFinite(v)) throw new RangeError(`${name} must be a finite number of epoch milliseconds`);
}

/**
 * Real instants for one naive wall-clock time, by the DST rules in the module comment.
 * `twoPasses` is true when two instants are returned (wildcard job in a repeated hour).
 */
function wallToInstants(wall: number, fixedTime: boolean, off: (ms: number) => number): { instants: number[]; twoPasses: boolean } {
	const before = off(wall - DAY_MS);
	const after = off(wall + DAY_MS);
	if (before === after) return { instants: [wall - before], twoPasses: false };
	const c1 = wall - before;
	const c2 = wall - after;
	const v1 = off(c1) === before;
	const v2 = off(c2) === after;
	if (v1 && v2) {
		const first = Math.min(c1, c2);
		const second = Math.max(c1, c2);
		return fixedTime ? { instants: [first], twoPasses: false } : { instants: [first, second], twoPasses: true };
	}
	if (v1) return { instants: [c1], twoPasses: false };
	if (v2) return { instants: [c2], twoPasses: false };
	// Skipped wall-clock time (spring forward).
	if (!fixedTime) return { instants: [], twoPasses: false };
	// The jump instant T lies in (lo, hi]: off(lo) is the old offset, off(hi) the new one.
	let lo = Math.min(c1, c2);
	let hi = Math.max(c1, c2);
	const offLo = off(lo);
	while (hi - lo > 1000) {
		const mid = lo + Math.floor((hi - lo) / 2000) * 1000;
		if (off(mid) === offLo) lo = mid;
		else hi = mid;
	}
	return { instants: [hi], twoPasses: false };
}

function sortUnique(a: number[]): number[] {
	a.sort((x, y) => x - y);
	let n = 0;
	for (let i = 0; i < a.length; i++) if (i === 0 || a[i] !== a[n - 1]) a[n++] = a[i];
	a.length = n;
	return a;
}

/**
 * Walk matching wall-clock times in order, starting low enough to cover every instant > afterMs.
 * `visit` gets the instants of each wall time; it returns false to stop. Wall times are visited in
 * ascending order and their instants are ascending too, except that the second-pass instants of a
 * repeated hour (twoPasses) are later than first-pass instants of the following wall times.
 */
function walk(ps: ParsedSchedule, zone: TimeZone, afterMs: number, visit: (instants: number[], twoPasses: boolean) => boolean): void {
	const off = (ms: number) => zone.offsetAt(ms);
	const startWall = afterMs + Math.min(off(afterMs), off(afterMs + DAY_MS)) - 1000;
	let cursor = new Date(startWall);
	for (;;) {
		const next = ps.matcher.nextRun(cursor);
		if (next === null) return;
		const { instants, twoPasses } = wallToInstants(next.getTime(), ps.fixedTime, off);
		if (!visit(instants, twoPasses)) return;
		cursor = next;
	}
}

/**
 * The next `count` fire instants (epoch ms), strictly after `afterMs`, ascending.
 * Pass a ParsedSchedule and a TimeZone (loadTimeZone) on hot paths; strings are parsed each call.
 */
export function nextFireTimes(expr: string | ParsedSchedule, timezone: string | TimeZone, afterMs: number, count: number): number[] {
	checkMs("afterMs", afterMs);
	const ps = toParsed(expr);
	const zone = toZone(timezone);
	if (!(count >= 1)) return [];
	const out: number[] = [];
	walk(ps, zone, afterMs, (instants, twoPasses) => {
		// A gap collapses several wall times onto one instant; they arrive one after another.
		for (const t of instants) if (t > afterMs && t !== out[out.length - 1]) out.push(t);
		// Later wall times only give later instants once we are past a repeated hour.
		return !(out.length >= count && !twoPasses);
	});
	return sortUnique(out).slice(0, count);
}

/** The next fire instant strictly after `afterMs`, or null if the schedule never fires again. */
export function nextFireTime(expr: string | ParsedSchedule, timezone: string | TimeZone, afterMs: number): number | null {
	const r = nextFireTimes(expr, timezone, afterMs, 1);
	return r.length > 0 ? r[0] : null;
}

/** All instants in (fromMs, untilMs], keeping only the latest `keep`. Cost ∝ fires in the range. */
function latestBetween(ps: ParsedSchedule, zone: TimeZone, fromMs: number, untilMs: number, keep: number): { fires: number[]; total: number } {
	let buf: number[] = [];
	let total = 0;
	walk(ps, zone, fromMs, (instants, twoPasses) => {
		let beyond = instants.length > 0;
		for (const t of instants) {
			if (t > fromMs && t <= untilMs && t !== buf[buf.length - 1]) {
				buf.push(t);
				total++;
			}
			if (t <= untilMs) beyond = false;
		}
		if (buf.length > 2 * keep + 16) buf = sortUnique(buf).slice(-keep);
		return !(beyond && !twoPasses);
	});
	return { fires: sortUnique(buf).slice(-keep), total };
}

/**
 * Fire instants in (afterMs, untilMs], ascending; when there are more than `max`, the LATEST `max`
 * are returned (the ones misfire catch-up cares about; older ones are simply not listed).
 * The search widens a window back from untilMs, so the cost is about proportional to `max`,
 * not to the length of the outage.
 */
export function fireTimesBetween(expr: string | ParsedSchedule, timezone: string | TimeZone, afterMs: number, untilMs: number, max: number): number[] {
	checkMs("afterMs", afterMs);
	checkMs("untilMs", untilMs);
	const ps = toParsed(expr);
	const zone = toZone(timezone);
	if (!(max >= 1) || untilMs <= afterMs) return [];
	const keep = Math.floor(max);
	for (let window = 60_000; ; window *= 8) {
		const from = Math.max(afterMs, untilMs - window);
		const { fires, total } = latestBetween(ps, zone, from, untilMs, keep);
		if (total >= keep || from === afterMs) return fires;
	}
}
