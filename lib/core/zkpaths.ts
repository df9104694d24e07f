/**
 * Every znode path the coordination uses, built in one pure module (with the parsers of node names).
 *
 * Layout under the root (default `/cronjob`):
 *
 *   <root>/workers/<workerId>                                 ephemeral, data = JSON WorkerRegistration
 *   <root>/election/n_<guid>_<seq10>                          ephemeral sequential, data = candidate id
 *   <root>/assignments/<workerId>/<jobId>                     persistent, empty: job assigned to worker
 *   <root>/claims/<jobId>/<scheduledAt>/lock-<guid>-<seq10>   ephemeral sequential, data = owner
 *
 * `<guid>` makes sequential nodes "protected" (Curator's protection mode): after a connection loss
 * during create, the client finds its own node by the guid. `<seq10>` is the 10-digit sequence
 * ZooKeeper appends; the lowest sequence wins (leader / lock holder).
 *
 * Ids are encoded into one path segment: [A-Za-z0-9_.:-] stay as they are, every other character
 * (including '/', '%', spaces, non-ASCII) becomes %XX of its UTF-8 bytes; segments "." and ".." (which
 * ZooKeeper refuses) have their dots encoded. The parse functions (node names, ids) return null on
 * names that are not ours or not canonically encoded.
 */
import { ConfigError } from "./errors";

export const DEFAULT_ROOT = "/cronjob";

const SAFE = /^[A-Za-z0-9_.:-]$/;
const GUID = /^[A-Za-z0-9]{1,64}$/;

/** Encode an id (worker, job) into a single safe znode name. Throws on an empty id. */
export function encodeId(id: string): string {
	if (typeof id !== "string" || id.length === 0) throw new Error("id must be a non-empty string");
	let out = "";
	for (const ch of id) {
		if (SAFE.test(ch)) out += ch;
		else for (const b of Buffer.from(ch, "utf8")) out += "%" + b.toString(16).toUpperCase().padStart(2, "0");
	}
	if (out === "." || out === "..") out = out.replace(/\./g, "%2E");
	return out;
}

/** Decode a segment made by encodeId, or null when it is not a canonical encoding. */
export function decodeId(segment: string): string | null {
	if (segment.length === 0 || segment.includes("/")) return null;
	let decoded: string;
	try {
		decoded = decodeURIComponent(segment);
	} catch {
		return null;
	}
	if (decoded.length === 0) return null;
	return encodeId(decoded) === segment ? decoded : null;
}

/** Validate and normalise a root path: absolute, no trailing slash, no empty/./.. segments. */
export function normalizeRoot(root: string = DEFAULT_ROOT): string {
	if (typeof root !== "string" || !root.startsWith("/")) throw new ConfigError("ZOOKEEPER_ROOT", `invalid coordination root "${root}": must start with /`);
	const trimmed = root.length > 1 && root.endsWith("/") ? root.slice(0, -1) : root;
	if (trimmed === "/") throw new ConfigError("ZOOKEEPER_ROOT", "coordination root must not be /");
	const segments = trimmed.slice(1).split("/");
	for (const s of segments) {
		// eslint-disable-next-line no-control-regex -- ZooKeeper refuses control characters in node names: matching them is the point.
		if (s === "" || s === "." || s === ".." || (s === "zookeeper" && segments.length === 1) || /[\u0000-\u001f\u007f]/.test(s)) {
			throw new ConfigError("ZOOKEEPER_ROOT", `invalid coordination root "${root}"`);
		}
	}
	return trimmed;
}

/** The 10-digit sequence ZooKeeper appended to a sequential node name, or null. */
export function sequenceOf(name: string): number | null {
	const m = /(\d{10})$/.exec(name);
	return m ? Number(m[1]) : null;
}

function validGuid(guid: string): string {
	if (!GUID.test(guid)) throw new Error(`invalid guid "${guid}": letters and digits only`);
	return guid;
}

function validScheduledAt(scheduledAt: number): string {
	if (!Number.isSafeInteger(scheduledAt) || scheduledAt < 0) throw new Error(`invalid scheduledAt ${scheduledAt}`);
	return String(scheduledAt);
}

export interface ElectionNodeName {
	guid: string;
	seq: number;
}

export interface ClaimNodeName {
	guid: string;
	seq: number;
}

/** Parse an election node name `n_<guid>_<seq10>`. */
export function parseElectionName(name: string): ElectionNodeName | null {
	const m = /^n_([A-Za-z0-9]{1,64})_(\d{10})$/.exec(name);
	return m ? { guid: m[1], seq: Number(m[2]) } : null;
}

/** Parse a claim node name `lock-<guid>-<seq10>`. */
export function parseClaimName(name: string): ClaimNodeName | null {
	const m = /^lock-([A-Za-z0-9]{1,64})-(\d{10})$/.exec(name);
	return m ? { guid: m[1], seq: Number(m[2]) } : null;
}

/** Compare sequential node names by their sequence (then by name). */
export function bySequence(a: string, b: string): number {
	const sa = sequenceOf(a) ?? Number.MAX_SAFE_INTEGER;
	const sb = sequenceOf(b) ?? Number.MAX_SAFE_INTEGER;
	return sa - sb || (a < b ? -1 : a > b ? 1 : 0);
}

export class ZkPaths {
	readonly root: string;
	readonly workers: string;
	readonly election: string;
	readonly assignments: string;
	readonly claims: string;

	constructor(root: string = DEFAULT_ROOT) {
		this.root = normalizeRoot(root);
		this.workers = `${this.root}/workers`;
		this.election = `${this.root}/election`;
		this.assignments = `${this.root}/assignments`;
		this.claims = `${this.root}/claims`;
	}

	/** The persistent parents created (idempotently) at start. */
	basePaths(): string[] {
		return [this.workers, this.election, this.assignments, this.claims];
	}

	worker(workerId: string): string {
		return `${this.workers}/${encodeId(workerId)}`;
	}

	/** The path prefix to create an election node with (ZooKeeper appends the sequence). */
	electionPrefix(guid: string): string {
		return `${this.election}/n_${validGuid(guid)}_`;
	}

	electionNode(name: string): string {
		return `${this.election}/${name}`;
	}

	assignmentWorker(workerId: string): string {
		return `${this.assignments}/${encodeId(workerId)}`;
	}

	assignment(workerId: string, jobId: string): string {
		return `${this.assignmentWorker(workerId)}/${encodeId(jobId)}`;
	}

	claimJob(jobId: string): string {
		return `${this.claims}/${encodeId(jobId)}`;
	}

	claim(jobId: string, scheduledAt: number): string {
		return `${this.claimJob(jobId)}/${validScheduledAt(scheduledAt)}`;
	}

	/** The path prefix to create a claim lock node with (ZooKeeper appends the sequence). */
	claimPrefix(jobId: string, scheduledAt: number, guid: string): string {
		return `${this.claim(jobId, scheduledAt)}/lock-${validGuid(guid)}-`;
	}
}
