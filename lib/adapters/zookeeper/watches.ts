/**
 * The watches of a ZooKeeper session: the live workers (`<root>/workers`, the folder and each
 * registration) and a worker's assignment (the children of `<root>/assignments/<worker>`), with the
 * reads behind them. A watch re-reads after every event and delivers when the value changed, once
 * soon after subscribing, and again whenever the session is usable (a reconnect or a new session).
 */
import * as zookeeper from "node-zookeeper-client";
import type { Client } from "node-zookeeper-client";
import type { WorkerRegistration } from "../../core/coordination";
import { decodeId } from "../../core/zkpaths";
import { deliver } from "../coordination-support";
import { delay, isCode, type Watcher } from "./requests";
import type { SessionParticipant, ZkSession } from "./session";

const { Exception } = zookeeper;

/** Delay between a watch event and the re-read (changes are delivered well within a second). */
const EVENT_DEBOUNCE_MS = 100;

/** Every registration (sorted by id), optionally setting watchers on the folder and each node. */
export async function readWorkers(session: ZkSession, client: Client, watcher?: Watcher): Promise<WorkerRegistration[]> {
	const { zk, paths, log } = session;
	const names = await zk.getChildren(client, paths.workers, watcher);
	const out: WorkerRegistration[] = [];
	await Promise.all(
		names.map(async (name) => {
			const id = decodeId(name);
			if (id === null) return;
			try {
				const { data } = await zk.getData(client, `${paths.workers}/${name}`, watcher);
				if (!data) return;
				out.push(JSON.parse(data.toString("utf8")) as WorkerRegistration);
			} catch (err) {
				if (isCode(err, Exception.NO_NODE)) return;
				if (err instanceof SyntaxError) {
					log.warn(`worker node ${name} has invalid JSON`);
					return;
				}
				throw err;
			}
		}),
	);
	return out.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
}

/** Job ids under a worker's folder, sorted (null when the folder does not exist). */
export async function readAssignments(session: ZkSession, client: Client, workerId: string, watcher?: Watcher): Promise<string[] | null> {
	try {
		const names = await session.zk.getChildren(client, session.paths.assignmentWorker(workerId), watcher);
		const jobs: string[] = [];
		for (const n of names) {
			const id = decodeId(n);
			if (id !== null) jobs.push(id);
		}
		return jobs.sort();
	} catch (err) {
		if (isCode(err, Exception.NO_NODE)) return null;
		throw err;
	}
}

/** The watches set through one session. */
export class Watches implements SessionParticipant {
	private readonly workers: WorkersWatch;
	private readonly assignments = new Map<string, AssignmentWatch>();

	constructor(private readonly session: ZkSession) {
		this.workers = new WorkersWatch(session);
	}

	/** Also called once, soon after subscribing, with the current list. */
	watchWorkers(listener: (workers: WorkerRegistration[]) => void): () => void {
		return this.workers.add(listener);
	}

	/** Also called once, soon after subscribing, with the current list. */
	watchAssignments(workerId: string, listener: (jobIds: string[]) => void): () => void {
		let w = this.assignments.get(workerId);
		if (!w) {
			w = new AssignmentWatch(this.session, workerId);
			this.assignments.set(workerId, w);
		}
		const watch = w;
		const off = watch.add(listener);
		return () => {
			off();
			if (watch.size() === 0 && this.assignments.get(workerId) === watch) {
				watch.stop();
				this.assignments.delete(workerId);
			}
		};
	}

	/** The session is usable (again): re-read and re-arm every watch. */
	ready(): void {
		this.workers.schedule();
		for (const w of this.assignments.values()) w.schedule();
	}

	closed(): void {
		this.workers.reset();
		this.assignments.clear();
	}
}

/** Re-reads on every event, delivers when the value changed; at most one read in flight. */
abstract class Watch<T> {
	protected readonly listeners = new Set<(value: T) => void>();
	private last: string | null = null;
	private running = false;
	private again = false;
	private stopped = false;
	private debounce: NodeJS.Timeout | null = null;
	/**
	 * Stable function so the client deduplicates the watch registrations. Events are coalesced for
	 * EVENT_DEBOUNCE_MS: a leader writing 100k assignments in hundreds of transactions would otherwise
	 * make every watcher re-read a large folder after each one.
	 */
	protected readonly onEvent = () => {
		if (this.debounce) return;
		this.debounce = setTimeout(() => {
			this.debounce = null;
			this.schedule();
		}, EVENT_DEBOUNCE_MS);
	};

	constructor(
		protected readonly session: ZkSession,
		/** What the listeners are called, in the report of one that fails. */
		private readonly what: string,
	) {}

	protected abstract read(client: Client): Promise<T>;

	add(listener: (value: T) => void): () => void {
		this.listeners.add(listener);
		this.stopped = false;
		// The first delivery to a new listener: force it even when the value did not change.
		this.last = null;
		this.schedule();
		return () => {
			this.listeners.delete(listener);
		};
	}

	size(): number {
		return this.listeners.size;
	}

	stop(): void {
		this.stopped = true;
		if (this.debounce) clearTimeout(this.debounce);
		this.debounce = null;
	}

	reset(): void {
		if (this.debounce) clearTimeout(this.debounce);
		this.debounce = null;
		this.listeners.clear();
		this.last = null;
		this.stopped = true;
	}

	schedule(): void {
		if (this.stopped || this.listeners.size === 0) return;
		if (this.running) {
			this.again = true;
			return;
		}
		this.running = true;
		void this.loop();
	}

	private async loop(): Promise<void> {
		try {
			do {
				this.again = false;
				const cur = this.session.currentClient();
				if (!cur || !this.session.isReady(cur.gen) || this.stopped || this.listeners.size === 0) break;
				let value: T;
				try {
					value = await this.read(cur.client);
				} catch {
					// Connection trouble: the session re-arms every watch when it is usable again.
					if (this.session.isReady(cur.gen)) {
						await delay(200);
						this.again = true;
					}
					continue;
				}
				if (!this.session.isReady(cur.gen) || this.stopped) break;
				const key = JSON.stringify(value);
				if (key === this.last) continue;
				this.last = key;
				for (const l of [...this.listeners]) deliver(this.session.log, this.what, () => l(value));
			} while (this.again);
		} finally {
			this.running = false;
		}
	}
}

class WorkersWatch extends Watch<WorkerRegistration[]> {
	constructor(session: ZkSession) {
		super(session, "coordination workers listener");
	}

	protected read(client: Client): Promise<WorkerRegistration[]> {
		return readWorkers(this.session, client, this.onEvent);
	}
}

class AssignmentWatch extends Watch<string[]> {
	constructor(
		session: ZkSession,
		private readonly workerId: string,
	) {
		super(session, "coordination assignment listener");
	}

	protected async read(client: Client): Promise<string[]> {
		for (;;) {
			const jobs = await readAssignments(this.session, client, this.workerId, this.onEvent);
			if (jobs !== null) return jobs;
			// No folder yet: watch for its creation.
			const exists = await this.session.zk.watchNode(client, this.session.paths.assignmentWorker(this.workerId), this.onEvent);
			if (!exists) return [];
		}
	}
}
