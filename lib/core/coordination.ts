/**
 * The coordination interface: worker registration, manager leadership, job assignment and per-fire
 * claims. The single-node default implements it in process (lib/adapters/memory/coordination.ts); the
 * cluster implements it on ZooKeeper (lib/adapters/zookeeper/coordination.ts). Each service holds its
 * own Coordination (one ZooKeeper session each), given by mixins/zookeeper.mixin.ts.
 */

export type ConnectionState = "connected" | "suspended" | "expired" | "closed";

export interface WorkerRegistration {
	/** Worker id = the Moleculer node id. */
	id: string;
	host: string;
	pid: number;
	/** ISO time the worker started. */
	startedAt: string;
	capacity: number;
	/** This worker's clock minus the database server's clock, in ms (null until measured). */
	clockOffsetMs: number | null;
	/** The offset's error bound in ms: half the round trip of the sample it came from (null until measured). */
	clockErrorMs: number | null;
}

export interface Candidacy {
	/** Leave the election (and lose leadership if held). */
	resign(): Promise<void>;
	isLeader(): boolean;
}

export interface LeadershipHandlers {
	/** Called when this candidate becomes leader. */
	elected(): void | Promise<void>;
	/** Called when leadership is lost (resigned, connection suspended or session expired). */
	revoked(): void | Promise<void>;
}

export interface Claim {
	jobId: string;
	scheduledAt: number;
	owner: string;
	/** Release the claim (idempotent). */
	release(): Promise<void>;
}

/** A move of one job: from a worker (or null = unassigned) to a worker (or null = unassign). */
export interface AssignmentMove {
	jobId: string;
	from: string | null;
	to: string | null;
}

export interface StateChange {
	state: ConnectionState;
	/** true on "connected" when a new session replaced an expired one: re-register and reconcile. */
	newSession: boolean;
}

/**
 * Every async operation rejects with a 503 UnavailableError (lib/core/errors.ts unavailable()) while
 * the state is not "connected".
 */
export interface Coordination {
	readonly kind: "memory" | "zookeeper";
	/** The current connection state. */
	state(): ConnectionState;
	connect(): Promise<void>;
	close(): Promise<void>;
	onStateChange(listener: (change: StateChange) => void): () => void;

	/**
	 * Register a worker (an ephemeral node in ZooKeeper: it disappears when the session dies). The
	 * implementation re-creates the registration after a session expiry.
	 */
	registerWorker(info: WorkerRegistration): Promise<void>;
	/**
	 * Update the data of this session's registration (heartbeat, clock offset). Throws NotFoundError
	 * if this Coordination did not register that id.
	 */
	updateWorker(info: WorkerRegistration): Promise<void>;
	unregisterWorker(id: string): Promise<void>;
	listWorkers(): Promise<WorkerRegistration[]>;
	/**
	 * Called with the full live list (sorted by id) whenever a worker joins, leaves or updates, and
	 * once soon after subscribing. Always asynchronous; re-delivered after a reconnect/new session.
	 */
	watchWorkers(listener: (workers: WorkerRegistration[]) => void): () => void;

	/**
	 * Enter the manager election. Exactly one candidate across the cluster is leader at a time;
	 * after a session expiry the candidate re-enters the election on its own.
	 */
	campaign(candidateId: string, handlers: LeadershipHandlers): Promise<Candidacy>;
	/** The current leader's candidate id, or null. */
	leader(): Promise<string | null>;

	/** Job ids assigned to a worker. */
	getAssignments(workerId: string): Promise<string[]>;
	/** The whole assignment: worker id -> job ids (includes workers that are no longer live). */
	allAssignments(): Promise<Map<string, string[]>>;
	/** Apply moves (add/remove/move jobs). Only the leader calls this. */
	applyMoves(moves: AssignmentMove[]): Promise<void>;
	/**
	 * Called with the worker's full job id list (sorted) whenever its assignment changes, and once soon
	 * after subscribing. Always asynchronous (ZooKeeper: within ~100 ms of the write).
	 */
	watchAssignments(workerId: string, listener: (jobIds: string[]) => void): () => void;

	/**
	 * Claim a fire (job, scheduled time) for `owner`: a lock on an ephemeral sequential node. Returns
	 * null when another live owner holds it. The claim vanishes with the owner's session. Not
	 * re-entrant: claiming a held fire again (even by the same owner) returns null.
	 */
	claim(jobId: string, scheduledAt: number, owner: string): Promise<Claim | null>;
	/** The owner of a live claim on (job, scheduled time), or null when nobody holds it. */
	claimOwner(jobId: string, scheduledAt: number): Promise<string | null>;
}
