/**
 * Coordination on ZooKeeper (node-zookeeper-client), following Apache Curator's recipes. This file
 * composes the parts, each in its own module:
 * - session.ts: the client and its session, Curator's connection states ("connected", "suspended",
 *   "expired" = Curator's LOST, "closed"), a new session after an expiry, and the worker
 *   registrations (ephemeral `<root>/workers/<id>`) it re-creates;
 * - candidacy.ts: the election (LeaderLatch on ephemeral sequential nodes, each candidate watching
 *   only its predecessor);
 * - claim.ts: per-fire claims (a lock without waiting on ephemeral sequential nodes);
 * - watches.ts: the watches of the live workers and of a worker's assignment;
 * - assignments.ts: the assignment's reads and batched, pipelined transactional writes;
 * - requests.ts: one request with a deadline, the exception codes.
 * The znode layout is in lib/core/zkpaths.ts. Sequential nodes carry a guid (Curator's "protected"
 * mode) so a create whose answer was lost with the connection can be found and cleaned up.
 */
import * as zookeeper from "node-zookeeper-client";
import type {
	AssignmentMove,
	Candidacy,
	Claim,
	ConnectionState,
	Coordination,
	LeadershipHandlers,
	StateChange,
	WorkerRegistration,
} from "../../core/coordination";
import { ZkPaths } from "../../core/zkpaths";
import { silentLogger, type CoordinationLogger } from "../coordination-support";
import { Assignments } from "./assignments";
import { Election } from "./candidacy";
import { Claims } from "./claim";
import { fail } from "./requests";
import { WorkerRegistrations, ZkSession } from "./session";
import { readWorkers, Watches } from "./watches";
import { ConfigError } from "../../core/errors";

const { Event } = zookeeper;

export interface ZookeeperCoordinationOptions {
	/** host:port[,host:port][/chroot] */
	connectionString: string;
	/** Root of every znode (default /cronjob). */
	root?: string;
	/** Requested session timeout (default 2000 ms; the server bounds it by its min/max). */
	sessionTimeoutMs?: number;
	/** How long connect() waits for the first session (default 30 s). */
	connectTimeoutMs?: number;
	/** Deadline of one ZooKeeper request (default max(2 x session timeout, 5 s)). */
	operationTimeoutMs?: number;
	/** Operations per transaction in applyMoves (default 250). */
	batchSize?: number;
	/** Transactions in flight at once in applyMoves (default 16). */
	pipeline?: number;
	/** Where the session's warnings (suspended, expired, lost) and failing listeners are reported. */
	logger?: CoordinationLogger;
}

export class ZookeeperCoordination implements Coordination {
	readonly kind = "zookeeper" as const;
	readonly paths: ZkPaths;
	private readonly session: ZkSession;
	private readonly registrations: WorkerRegistrations;
	private readonly election: Election;
	private readonly claims: Claims;
	private readonly watches: Watches;
	private readonly assignments: Assignments;

	constructor(opts: ZookeeperCoordinationOptions) {
		if (!opts || typeof opts.connectionString !== "string" || opts.connectionString.length === 0) {
			throw new ConfigError("ZOOKEEPER", "ZookeeperCoordination needs a connectionString (host:port[,host:port][/chroot])");
		}
		this.paths = new ZkPaths(opts.root);
		const sessionTimeoutMs = opts.sessionTimeoutMs ?? 2000;
		this.session = new ZkSession({
			connectionString: opts.connectionString,
			paths: this.paths,
			sessionTimeoutMs,
			connectTimeoutMs: opts.connectTimeoutMs ?? 30_000,
			operationTimeoutMs: opts.operationTimeoutMs ?? Math.max(2 * sessionTimeoutMs, 5000),
			log: opts.logger ?? silentLogger,
		});
		this.registrations = new WorkerRegistrations(this.session);
		this.election = new Election(this.session);
		this.claims = new Claims(this.session);
		this.watches = new Watches(this.session);
		this.assignments = new Assignments(this.session, Math.max(2, opts.batchSize ?? 250), Math.max(1, opts.pipeline ?? 16));
		// The order of every transition: registrations and candidacies are re-created in a new
		// session before it is announced; then the candidacies re-check, then the watches re-read.
		this.session.join(this.registrations, this.election, this.claims, this.watches);
	}

	// ------------------------------------------------------------------ connection

	state(): ConnectionState {
		return this.session.state();
	}

	/** The current session id (hex), or null. For diagnostics and tests. */
	sessionId(): string | null {
		return this.session.sessionId();
	}

	/** The current session's id and password, e.g. to force an expiry in tests. */
	sessionCredentials(): { sessionId: Buffer; password: Buffer } | null {
		return this.session.sessionCredentials();
	}

	connect(): Promise<void> {
		return this.session.connect();
	}

	close(): Promise<void> {
		return this.session.close();
	}

	onStateChange(listener: (change: StateChange) => void): () => void {
		return this.session.onStateChange(listener);
	}

	// ------------------------------------------------------------------ workers

	registerWorker(info: WorkerRegistration): Promise<void> {
		return this.registrations.register(info);
	}

	updateWorker(info: WorkerRegistration): Promise<void> {
		return this.registrations.update(info);
	}

	unregisterWorker(id: string): Promise<void> {
		return this.registrations.unregister(id);
	}

	async listWorkers(): Promise<WorkerRegistration[]> {
		const client = this.session.live();
		try {
			return await readWorkers(this.session, client);
		} catch (err) {
			fail(err);
		}
	}

	/** Also called once, soon after subscribing, with the current list. */
	watchWorkers(listener: (workers: WorkerRegistration[]) => void): () => void {
		return this.watches.watchWorkers(listener);
	}

	// ------------------------------------------------------------------ election

	campaign(candidateId: string, handlers: LeadershipHandlers): Promise<Candidacy> {
		return this.election.campaign(candidateId, handlers);
	}

	leader(): Promise<string | null> {
		return this.election.leader();
	}

	// ------------------------------------------------------------------ assignments

	getAssignments(workerId: string): Promise<string[]> {
		return this.assignments.get(workerId);
	}

	allAssignments(): Promise<Map<string, string[]>> {
		return this.assignments.all();
	}

	applyMoves(moves: AssignmentMove[]): Promise<void> {
		return this.assignments.applyMoves(moves);
	}

	/** Also called once, soon after subscribing, with the current list. */
	watchAssignments(workerId: string, listener: (jobIds: string[]) => void): () => void {
		return this.watches.watchAssignments(workerId, listener);
	}

	// ------------------------------------------------------------------ claims

	claim(jobId: string, scheduledAt: number, owner: string): Promise<Claim | null> {
		return this.claims.claim(jobId, scheduledAt, owner);
	}

	claimOwner(jobId: string, scheduledAt: number): Promise<string | null> {
		return this.claims.claimOwner(jobId, scheduledAt);
	}
}

export { Event as ZookeeperEvent };
