/**
 * ZooKeeper requests as the parts of the ZooKeeper coordination make them: one request with a
 * deadline, the common reads, deletes and existence watches, the exception codes, and closing a
 * client. Every request rejects with the ZooKeeper exception (check codes with zkCode / isCode);
 * fail() turns the connection-level ones into 503 for callers.
 */
import { randomBytes } from "node:crypto";
import * as zookeeper from "node-zookeeper-client";
import type { Client, Stat } from "node-zookeeper-client";
import { unavailable } from "../../core/errors";

const { Exception, State } = zookeeper;

export type Watcher = (e: zookeeper.Event) => void;

type ZkError = Error & { getCode?: () => number; code?: number };

export function zkCode(err: unknown): number | null {
	const e = err as ZkError | null;
	if (e && typeof e.getCode === "function") return e.getCode();
	return null;
}

export function isCode(err: unknown, code: number): boolean {
	return zkCode(err) === code;
}

/** Map connection-level failures to 503 for callers; anything else is thrown as it is. */
export function fail(err: unknown): never {
	const code = zkCode(err);
	if (code === Exception.CONNECTION_LOSS || code === Exception.SESSION_EXPIRED || code === Exception.OPERATION_TIMEOUT) {
		throw unavailable("coordination", err);
	}
	throw err;
}

/**
 * A rejection reason as an Error. ZooKeeper's exceptions already are Errors (util.inherits), which their
 * typings leave out; anything else thrown is wrapped.
 */
function asError(err: unknown): Error {
	return err instanceof Error ? err : new Error(String(err));
}

/** The guid of a "protected" sequential node (Curator's protection mode). */
export function guid(): string {
	return randomBytes(8).toString("hex");
}

export function basename(path: string): string {
	return path.slice(path.lastIndexOf("/") + 1);
}

export function delay(ms: number): Promise<void> {
	return new Promise((resolve) => setTimeout(resolve, ms));
}

export class Requests {
	/** `timeoutMs`: the deadline of one request. */
	constructor(readonly timeoutMs: number) {}

	/** One request with a deadline (503 when it passes). */
	call<T>(client: Client, what: string, fn: (cb: (err: Error | zookeeper.Exception | null, res: T) => void) => void): Promise<T> {
		return new Promise<T>((resolve, reject) => {
			let done = false;
			const timer = setTimeout(() => {
				if (done) return;
				done = true;
				reject(unavailable("coordination", `${what}: no answer within ${this.timeoutMs} ms`));
			}, this.timeoutMs);
			try {
				fn((err, res) => {
					if (done) return;
					done = true;
					clearTimeout(timer);
					if (err) reject(asError(err));
					else resolve(res);
				});
			} catch (err) {
				done = true;
				clearTimeout(timer);
				reject(asError(err));
			}
		});
	}

	getChildren(client: Client, path: string, watcher?: Watcher): Promise<string[]> {
		return this.call<string[]>(client, `getChildren ${path}`, (cb) => (watcher ? client.getChildren(path, watcher, cb) : client.getChildren(path, cb)));
	}

	getData(client: Client, path: string, watcher?: Watcher): Promise<{ data: Buffer | null; stat: Stat }> {
		return new Promise((resolve, reject) => {
			this.call<[Buffer | null, Stat]>(client, `getData ${path}`, (cb) => {
				const done = (err: Error | zookeeper.Exception | null, data: Buffer, stat: Stat) => cb(err, [data, stat]);
				if (watcher) client.getData(path, watcher, done);
				else client.getData(path, done);
			}).then(([data, stat]) => resolve({ data, stat }), reject);
		});
	}

	/** Delete a node (any version); false when it did not exist. */
	async remove(client: Client, path: string): Promise<boolean> {
		try {
			await this.call<void>(client, `remove ${path}`, (cb) => client.remove(path, -1, (err) => cb(err, undefined)));
			return true;
		} catch (err) {
			if (isCode(err, Exception.NO_NODE)) return false;
			throw err;
		}
	}

	/** Watch a node's existence (created, deleted, changed); true when it exists now. */
	watchNode(client: Client, path: string, watcher: Watcher): Promise<boolean> {
		return this.call<Stat | null>(client, `exists ${path}`, (cb) => client.exists(path, watcher, cb)).then((stat) => !!stat);
	}

	mkdirp(client: Client, path: string): Promise<string> {
		return this.call<string>(client, `mkdirp ${path}`, (cb) => client.mkdirp(path, cb));
	}
}

/** What handshakeDeadline uses of node-zookeeper-client's ConnectionManager (lib/ConnectionManager.js, 1.1.3). */
interface ConnectionManagerInternals {
	state: number;
	socket?: { destroy(): void; once(event: "close", fn: () => void): unknown };
	onSocketConnected?: (this: ConnectionManagerInternals) => void;
}

/** ConnectionManager.STATES.CONNECTING: the connect request is sent, its answer not yet in. */
const CM_CONNECTING = 1;

/**
 * Give a client's session handshake a deadline, as the Java client does (its connect timeout covers
 * the handshake). node-zookeeper-client clears its connect timer as soon as the TCP connection is up
 * and then waits for the answer to its connect request without any: a server that accepts the
 * connection while it is still starting and then neither answers nor closes it (ZooKeeper 3.8 does
 * when a connection is closed before its database is loaded: a NullPointerException in
 * NIOServerCnxn) leaves the client waiting for good, and the session comes only when our own
 * deadline (several seconds) gives up on that client. Here a connection that has not become a
 * session within `ms` of its TCP connect is destroyed; the client dials again on its own.
 */
export function handshakeDeadline(client: Client, ms: number): void {
	const cm = (client as unknown as { connectionManager?: ConnectionManagerInternals }).connectionManager;
	const connected = cm?.onSocketConnected;
	if (!cm || typeof connected !== "function") return; // another client version: its own behaviour
	// connect() binds this.onSocketConnected on every dial: the instance's own wins.
	cm.onSocketConnected = function (this: ConnectionManagerInternals) {
		const socket = this.socket;
		if (socket) {
			const timer = setTimeout(() => {
				if (cm.socket === socket && cm.state === CM_CONNECTING) socket.destroy();
			}, ms);
			socket.once("close", () => clearTimeout(timer));
		}
		connected.call(this);
	};
}

/** Close a client, waiting (up to `timeoutMs`) for the server to end the session when connected. */
export function closeClient(client: Client, timeoutMs: number): Promise<void> {
	return new Promise((resolve) => {
		client.removeAllListeners("state");
		const state = client.getState();
		if (state !== State.SYNC_CONNECTED && state !== State.CONNECTED_READ_ONLY) {
			try {
				client.close();
			} catch {
				/* ignore */
			}
			resolve();
			return;
		}
		const timer = setTimeout(done, timeoutMs);
		function done() {
			clearTimeout(timer);
			client.removeListener("state", onState);
			resolve();
		}
		function onState(s: zookeeper.State) {
			if (s === State.DISCONNECTED || s === State.EXPIRED) done();
		}
		client.on("state", onState);
		client.close();
	});
}
