/**
 * The ZooKeeper session of a ZookeeperCoordination, with Curator's connection states
 * (ConnectionStateManager):
 * - "connected": the session is usable;
 * - "suspended": the connection dropped; the session may still live. Leadership is revoked at once
 *   (a leader must not act while it cannot know whether it still leads). If the connection comes back
 *   within the session timeout, the same session continues ("connected", newSession: false) and the
 *   candidate leads again if its node is still the lowest;
 * - "expired": the server expired the session, or the connection stayed down for the whole session
 *   timeout (Curator's LOST). Leadership is revoked, claims are dropped, then a NEW client/session is
 *   created, the worker registrations re-created, the election re-entered, and
 *   {state: "connected", newSession: true} is emitted so services reconcile;
 * - "closed": close() was called (or connect() was never called).
 *
 * The parts of the coordination (registrations here, the election, the claims, the watches) join the
 * session as participants and are told of every transition, in the order they joined. Also here: the
 * worker registrations, which a new session re-creates before it is announced.
 */
import * as zookeeper from "node-zookeeper-client";
import type { Client, Stat } from "node-zookeeper-client";
import { notFound, unavailable } from "../../core/errors";
import type { ConnectionState, StateChange, WorkerRegistration } from "../../core/coordination";
import type { ZkPaths } from "../../core/zkpaths";
import { ConnectionStates, type CoordinationLogger } from "../coordination-support";
import { closeClient, delay, fail, handshakeDeadline, isCode, Requests } from "./requests";

const { CreateMode, Exception, State } = zookeeper;

/** A part of the coordination that keeps state in the session. Each hook is optional. */
export interface SessionParticipant {
	/** A (new) session is connected: re-create this part's ephemeral nodes, before it is announced. */
	restore?(client: Client, gen: number): Promise<void>;
	/** The session is usable: a new one is announced, or the same one's connection came back. */
	ready?(): void;
	/** The connection dropped (the session may still live). */
	suspended?(): void;
	/** The session expired (or was lost): its ephemeral nodes are gone. */
	expired?(): void;
	/** close() was called. */
	closed?(): void;
}

export interface SessionOptions {
	/** host:port[,host:port][/chroot] */
	connectionString: string;
	paths: ZkPaths;
	sessionTimeoutMs: number;
	connectTimeoutMs: number;
	operationTimeoutMs: number;
	log: CoordinationLogger;
}

/** The shortest deadline of a session handshake (requests.ts handshakeDeadline). */
const HANDSHAKE_MIN_MS = 500;

/** A session superseded while it was being set up (never leaves this module: connect() maps it to 503). */
class CoordinationUnavailable extends Error {}

export class ZkSession {
	readonly paths: ZkPaths;
	readonly log: CoordinationLogger;
	readonly zk: Requests;
	private readonly connectionString: string;
	private readonly sessionTimeoutMs: number;
	private readonly connectTimeoutMs: number;

	private client: Client | null = null;
	/** Incremented for every new client; events of older clients are ignored. */
	private gen = 0;
	/** The generation whose session is fully set up (registrations, election), or -1. */
	private readyGeneration = -1;
	private readonly states: ConnectionStates;
	private closing = false;
	private recovering: Promise<void> | null = null;
	private lostTimer: NodeJS.Timeout | null = null;
	private readonly participants: SessionParticipant[] = [];

	constructor(opts: SessionOptions) {
		this.connectionString = opts.connectionString;
		this.paths = opts.paths;
		this.log = opts.log;
		this.sessionTimeoutMs = opts.sessionTimeoutMs;
		this.connectTimeoutMs = opts.connectTimeoutMs;
		this.zk = new Requests(opts.operationTimeoutMs);
		this.states = new ConnectionStates(opts.log);
	}

	/** Add participants; they are told of each transition in this order. */
	join(...participants: SessionParticipant[]): void {
		this.participants.push(...participants);
	}

	/** The current client's generation. */
	get generation(): number {
		return this.gen;
	}

	state(): ConnectionState {
		return this.states.current;
	}

	onStateChange(listener: (change: StateChange) => void): () => void {
		return this.states.listen(listener);
	}

	/** The current session id (hex), or null. */
	sessionId(): string | null {
		return this.client && this.readyGeneration === this.gen ? this.client.getSessionId().toString("hex") : null;
	}

	/** The current session's id and password. */
	sessionCredentials(): { sessionId: Buffer; password: Buffer } | null {
		if (!this.client || this.readyGeneration !== this.gen) return null;
		return { sessionId: this.client.getSessionId(), password: this.client.getSessionPassword() };
	}

	async connect(): Promise<void> {
		if (this.states.current !== "closed") return;
		this.closing = false;
		try {
			await this.startSession(false, this.connectTimeoutMs);
		} catch (err) {
			this.dropClient();
			this.states.current = "closed";
			throw unavailable("coordination", err);
		}
	}

	async close(): Promise<void> {
		if (this.closing || (this.states.current === "closed" && !this.client)) return;
		this.closing = true;
		this.clearLostTimer();
		for (const p of this.participants) p.closed?.();
		const client = this.client;
		this.client = null;
		this.gen++;
		this.readyGeneration = -1;
		if (client) await closeClient(client, 2000);
		this.states.set("closed", false);
		if (this.recovering) await this.recovering.catch(() => undefined);
	}

	/** The client when the session is usable; throws 503 otherwise. */
	live(): Client {
		if (this.states.current !== "connected" || !this.client || this.readyGeneration !== this.gen) {
			throw unavailable("coordination", `ZooKeeper session is ${this.states.current}`);
		}
		return this.client;
	}

	/** The client for internal work even while (re)establishing, or null. */
	currentClient(): { client: Client; gen: number } | null {
		return this.client ? { client: this.client, gen: this.gen } : null;
	}

	/** True while generation `gen` is the current, set-up and connected session. */
	isReady(gen: number): boolean {
		return gen === this.gen && this.readyGeneration === gen && this.states.current === "connected";
	}

	/** Create a client, wait for its session, then (re-)create our ephemeral state. */
	private async startSession(newSession: boolean, timeoutMs: number): Promise<void> {
		const gen = ++this.gen;
		const client = zookeeper.createClient(this.connectionString, {
			sessionTimeout: this.sessionTimeoutMs,
			spinDelay: 200,
			retries: 0,
		});
		// A third of the session timeout, the client's own ping interval: a server that cannot set up
		// a session in that time could not keep it alive either.
		handshakeDeadline(client, Math.max(HANDSHAKE_MIN_MS, Math.floor(this.sessionTimeoutMs / 3)));
		this.client = client;
		client.on("state", (s) => this.onClientState(gen, s));
		await new Promise<void>((resolve, reject) => {
			const timer = setTimeout(() => {
				client.removeListener("state", onState);
				reject(unavailable("coordination", `no ZooKeeper session within ${timeoutMs} ms (${this.connectionString})`));
			}, timeoutMs);
			const onState = (s: zookeeper.State) => {
				if (s === State.SYNC_CONNECTED) {
					clearTimeout(timer);
					client.removeListener("state", onState);
					resolve();
				}
			};
			client.on("state", onState);
			client.connect();
		});
		if (gen !== this.gen) throw new CoordinationUnavailable("superseded");
		for (const p of this.paths.basePaths()) await this.zk.mkdirp(client, p);
		for (const p of this.participants) await p.restore?.(client, gen);
		if (gen !== this.gen) throw new CoordinationUnavailable("superseded");
		this.readyGeneration = gen;
		this.log.info(
			`ZooKeeper session ${client.getSessionId().toString("hex")} ready (timeout ${client.getSessionTimeout()} ms${newSession ? ", new session after expiry" : ""})`,
		);
		this.states.set("connected", newSession, true);
		for (const p of this.participants) p.ready?.();
	}

	private onClientState(gen: number, s: zookeeper.State): void {
		if (gen !== this.gen || this.closing) return;
		if (s === State.SYNC_CONNECTED || s === State.CONNECTED_READ_ONLY) {
			if (this.readyGeneration === gen && this.states.current === "suspended") {
				this.clearLostTimer();
				this.log.info("ZooKeeper connection restored (same session)");
				this.states.set("connected", false);
				for (const p of this.participants) p.ready?.();
			}
		} else if (s === State.DISCONNECTED) {
			if (this.readyGeneration === gen && this.states.current === "connected") {
				this.log.warn("ZooKeeper connection lost: suspended");
				this.states.set("suspended", false);
				for (const p of this.participants) p.suspended?.();
				this.clearLostTimer();
				const timeout = this.client?.getSessionTimeout() || this.sessionTimeoutMs;
				this.lostTimer = setTimeout(() => {
					this.lostTimer = null;
					if (gen === this.gen && this.states.current === "suspended") {
						this.log.warn(`ZooKeeper connection down for the whole session timeout (${timeout} ms): treating the session as lost`);
						this.expire();
					}
				}, timeout);
			}
		} else if (s === State.EXPIRED) {
			this.log.warn("ZooKeeper session expired");
			this.expire();
		} else if (s === State.AUTH_FAILED) {
			this.log.error("ZooKeeper authentication failed");
		}
	}

	/** Session expired (or lost): revoke, drop claims, then build a new session in the background. */
	private expire(): void {
		if (this.closing || this.states.current === "closed") return;
		this.clearLostTimer();
		this.readyGeneration = -1;
		this.gen++;
		this.dropClient();
		for (const p of this.participants) p.expired?.();
		this.states.set("expired", false);
		if (!this.recovering) {
			this.recovering = this.recover().finally(() => {
				this.recovering = null;
			});
		}
	}

	private async recover(): Promise<void> {
		let backoff = 100;
		while (!this.closing) {
			try {
				await this.startSession(true, Math.max(this.sessionTimeoutMs * 2, 5000));
				return;
			} catch (err) {
				if (this.closing) return;
				this.log.warn(`ZooKeeper: new session failed (${err instanceof Error ? err.message : String(err)}); retrying in ${backoff} ms`);
				this.dropClient();
				await delay(backoff);
				backoff = Math.min(backoff * 2, 5000);
			}
		}
	}

	private dropClient(): void {
		const client = this.client;
		this.client = null;
		if (client) {
			client.removeAllListeners("state");
			try {
				client.close();
			} catch {
				/* already closed */
			}
		}
	}

	private clearLostTimer(): void {
		if (this.lostTimer) clearTimeout(this.lostTimer);
		this.lostTimer = null;
	}
}

/**
 * The worker registrations made through this session: ephemeral `<root>/workers/<id>`, data = JSON
 * WorkerRegistration. A new session re-creates them (re-registration after an expiry).
 */
export class WorkerRegistrations implements SessionParticipant {
	private readonly registrations = new Map<string, WorkerRegistration>();

	constructor(private readonly session: ZkSession) {}

	async register(info: WorkerRegistration): Promise<void> {
		const client = this.session.live();
		this.registrations.set(info.id, { ...info });
		try {
			await this.write(client, info);
		} catch (err) {
			fail(err);
		}
	}

	async update(info: WorkerRegistration): Promise<void> {
		const client = this.session.live();
		if (!this.registrations.has(info.id)) throw notFound("Worker registration", info.id);
		this.registrations.set(info.id, { ...info });
		const { zk, paths } = this.session;
		const path = paths.worker(info.id);
		try {
			await zk.call<Stat>(client, `setData ${path}`, (cb) => client.setData(path, Buffer.from(JSON.stringify(info)), -1, cb));
		} catch (err) {
			if (isCode(err, Exception.NO_NODE)) {
				try {
					await this.write(client, info);
				} catch (e) {
					fail(e);
				}
				return;
			}
			fail(err);
		}
	}

	async unregister(id: string): Promise<void> {
		const client = this.session.live();
		this.registrations.delete(id);
		try {
			await this.session.zk.remove(client, this.session.paths.worker(id));
		} catch (err) {
			fail(err);
		}
	}

	async restore(client: Client): Promise<void> {
		for (const info of this.registrations.values()) await this.write(client, info);
	}

	closed(): void {
		this.registrations.clear();
	}

	private async write(client: Client, info: WorkerRegistration): Promise<void> {
		const { zk, paths, log } = this.session;
		const path = paths.worker(info.id);
		const data = Buffer.from(JSON.stringify(info));
		for (let attempt = 0; attempt < 5; attempt++) {
			try {
				await zk.call<string>(client, `create ${path}`, (cb) => client.create(path, data, CreateMode.EPHEMERAL, cb));
				return;
			} catch (err) {
				if (!isCode(err, Exception.NODE_EXISTS)) throw err;
			}
			// Exists: ours -> update; another session's (a previous incarnation of this worker) -> replace it.
			try {
				const { stat } = await zk.getData(client, path);
				if (stat.ephemeralOwner.equals(client.getSessionId())) {
					await zk.call<Stat>(client, `setData ${path}`, (cb) => client.setData(path, data, -1, cb));
					return;
				}
				log.warn(`worker ${info.id} was registered by another session: replacing it`);
				await zk.remove(client, path);
			} catch (err) {
				if (!isCode(err, Exception.NO_NODE)) throw err;
			}
		}
		throw unavailable("coordination", `could not register worker ${info.id}`);
	}
}
