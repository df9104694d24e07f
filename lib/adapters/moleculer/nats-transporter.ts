/**
 * Moleculer's NATS transporter, made to follow its connection. On the nats v2 client, Moleculer's
 * own transporter only logs the client's status events (moleculer/src/transporters/nats.js), and
 * three things follow from that when the NATS server goes away and comes back:
 *
 * - Requests sent while the connection is down are not refused: the client buffers them, then
 *   discards its buffer when it dials again (nats.js ProtocolHandler.prepare -> resetOutbound). A
 *   request in flight when the connection dropped loses its request or its answer (core NATS keeps
 *   nothing). Either way the caller waits for Moleculer's request timeout (30 s) for an answer that
 *   cannot come: a worker's fire waits that long to learn that its start was not recorded.
 * - The node does not announce itself again after the reconnect (the legacy v1 path does, with
 *   onConnected(true)): a node that another one marked gone during the outage (missed heartbeats)
 *   stays gone until its next heartbeat is noticed and a DISCOVER/INFO exchange follows.
 * - The client waits 2 s (nats.js reconnectTimeWait) between dials: up to 2 s of outage more.
 *
 * - After its own reconnect a node sends requests to nodes that have not dialed again yet: the
 *   server has no subscription of theirs, drops the message, and again the caller waits 30 s.
 *
 * So: on the client's "disconnect" the transporter counts as disconnected (the base transporter
 * then refuses requests and events at once with a retryable BrokerDisconnectedError, which every
 * caller handles as a backend that is down), the requests in flight are failed now with
 * unavailable("transporter"), and every remote node is taken for gone (its services leave the
 * registry: a call finds no node and fails at once instead of going nowhere). On "reconnect" it runs
 * Moleculer's reconnect path: INFO to all, DISCOVER to all. A remote node comes back into the
 * registry with its INFO, which it sends only after its own reconnect, once its subscriptions are
 * on the server again: a request sent to it from then on is received. It dials every
 * RECONNECT_WAIT_MS.
 */
import { Transporters, type LoggerInstance, type ServiceBroker } from "moleculer";
import { unavailable } from "../../core/errors";
import { toMoleculerError } from "./errors";

/** The wait between two dials of the NATS client while the server is away. */
export const RECONNECT_WAIT_MS = 250;
/** At most this much more, at random, so that the nodes do not dial in step. */
export const RECONNECT_JITTER_MS = 100;

/** What this transporter uses of the nats v2 client (the `nats` package's NatsConnection). */
interface NatsClient {
	status(): AsyncIterable<{ type: string; data: unknown }>;
}

/** What it uses of Moleculer's Transit (moleculer/src/transit.js; its typings leave these out). */
interface PendingRequest {
	action: { name: string };
	nodeID: string | null;
	reject(err: unknown): void;
}
interface TransitInternals {
	pendingRequests: Map<string, PendingRequest>;
	removePendingRequest(id: string): void;
}
/** Moleculer's node catalog (moleculer/src/registry/node-catalog.js; typed `any`). */
interface NodeCatalog {
	toArray(): { id: string; local: boolean; available: boolean }[];
	disconnected(nodeID: string, isUnexpected: boolean): void;
}

export class FollowingNatsTransporter extends Transporters.NATS {
	// Set by Moleculer's transporters at run time; their typings leave them out.
	declare connected: boolean;
	declare client: NatsClient | null;
	declare logger: LoggerInstance;
	declare transit: TransitInternals;
	declare broker: ServiceBroker;
	private followed: NatsClient | null = null;

	constructor(url: string) {
		super({ url, reconnectTimeWait: RECONNECT_WAIT_MS, reconnectJitter: RECONNECT_JITTER_MS });
	}

	/** First connect (from Moleculer's connect()) or our reconnect: follow the client once it exists. */
	override onConnected(wasReconnect?: boolean): Promise<unknown> {
		const client = this.client;
		if (client && client !== this.followed) {
			this.followed = client;
			void this.follow(client);
		}
		return super.onConnected(wasReconnect);
	}

	private async follow(client: NatsClient): Promise<void> {
		try {
			for await (const s of client.status()) {
				if (s.type === "disconnect") this.lost();
				else if (s.type === "reconnect") this.back();
			}
		} catch (err) {
			this.logger.warn("NATS status events ended:", (err as Error).message);
		}
	}

	/** The connection dropped: refuse new requests, fail those in flight (their messages are gone), forget the other nodes. */
	lost(): void {
		if (!this.connected) return;
		this.connected = false;
		const transit = this.transit;
		const pending = [...transit.pendingRequests];
		this.logger.warn(`NATS connection lost: requests fail until it is back (${pending.length} in flight failed now)`);
		for (const [id, req] of pending) {
			transit.removePendingRequest(id);
			req.reject(toMoleculerError(unavailable("transporter", `NATS connection lost during the '${req.action.name}' request`)));
		}
		const nodes = this.broker.registry.nodes as NodeCatalog;
		for (const node of nodes.toArray()) if (!node.local && node.available) nodes.disconnected(node.id, true);
	}

	/** The client dialed again (and re-subscribed): announce this node and discover the others. */
	back(): void {
		if (this.connected) return;
		this.logger.info("NATS connection is back: announcing this node and discovering the others");
		this.onConnected(true).catch((err: unknown) => this.logger.warn("After the NATS reconnect:", (err as Error).message));
	}
}

/** The transporter for a TRANSPORTER setting: ours for nats:// URLs, anything else as Moleculer takes it. */
export function transporterFor(setting: string): string | FollowingNatsTransporter {
	return /^nats:\/\//i.test(setting) ? new FollowingNatsTransporter(setting) : setting;
}
