/**
 * Raw ZooKeeper helpers for tests, benchmarks and operators: connect a plain client, and delete a
 * tree (node-zookeeper-client's removeRecursive misses nodes). Not used by the services.
 */
import * as zookeeper from "node-zookeeper-client";
import { waitFor } from "./wait";

export function zkErrorCode(err: unknown): number | null {
	const e = err as { getCode?: () => number };
	return typeof e?.getCode === "function" ? e.getCode() : null;
}

/** A ZooKeeper exception as the Error it is at run time (util.inherits; its typings leave that out). */
function asError(err: Error | zookeeper.Exception): Error {
	return err instanceof Error ? err : new Error(err.toString());
}

/** A connected client (rejects after 10 s). `opts` may carry sessionId/sessionPassword. */
export function connectZk(connectionString: string, opts: Record<string, unknown> = {}): Promise<zookeeper.Client> {
	return new Promise((resolve, reject) => {
		const client = zookeeper.createClient(connectionString, { sessionTimeout: 2000, ...opts });
		const timer = setTimeout(() => {
			client.close();
			reject(new Error(`cannot connect to ZooKeeper at ${connectionString}: run scripts/services.sh start`));
		}, 10_000);
		client.once("connected", () => {
			clearTimeout(timer);
			resolve(client);
		});
		client.connect();
	});
}

/** Delete `root` and everything below it; retries while dead sessions' ephemeral nodes linger. */
export async function removeZkTree(connectionString: string, root: string, timeoutMs = 20_000): Promise<void> {
	const client = await connectZk(connectionString);
	const NO_NODE = zookeeper.Exception.NO_NODE;
	const children = (p: string) =>
		new Promise<string[]>((resolve, reject) =>
			client.getChildren(p, (err, kids) => (err ? (zkErrorCode(err) === NO_NODE ? resolve([]) : reject(asError(err))) : resolve(kids))),
		);
	const remove = (p: string) =>
		new Promise<void>((resolve, reject) => client.remove(p, -1, (err) => (err && zkErrorCode(err) !== NO_NODE ? reject(asError(err)) : resolve())));
	const removeTree = async (p: string): Promise<void> => {
		const kids = await children(p);
		for (let i = 0; i < kids.length; i += 500) await Promise.all(kids.slice(i, i + 500).map((k) => removeTree(`${p}/${k}`)));
		await remove(p);
	};
	try {
		await waitFor(
			async () => {
				await removeTree(root);
				return true;
			},
			timeoutMs,
			`removal of ${root}`,
			200,
		);
	} finally {
		client.close();
	}
}
