/**
 * The object store's interface: executables kept by content digest, on the local object folder
 * (local/object-store.ts) or S3 (s3/object-store.ts); app/object-store.ts chooses one.
 */
import type { Readable } from "node:stream";

export interface StoredObject {
	/** The URL answered to clients as `executable`: s3://bucket/key or file:///... */
	url: string;
	key: string;
	digest: string;
	size: number;
}

export interface ObjectStore {
	readonly kind: "local" | "s3";
	/** Store content under the key derived from its SHA-256 (hex). Idempotent. */
	put(digest: string, content: Buffer): Promise<StoredObject>;
	/** Stream an object's bytes. Rejects when missing or the store is unreachable. */
	get(digest: string): Promise<Readable>;
	/** Whether the object exists. */
	exists(digest: string): Promise<boolean>;
	/** The URL for a digest (without checking it exists). */
	urlFor(digest: string): string;
	/** The digest named by one of our own URLs, or null when the URL is not ours. */
	digestFromUrl(url: string): string | null;
	/** Health check: resolves when reachable. */
	ping(): Promise<void>;
	/** Release sockets/handles (S3 client). Optional; call from a service's stopped(). */
	close?(): void;
}

/** True for errors that mean "the object store is down, try later" (ours or anything marked transient). */
export { isRetryable as isTransientStoreError } from "../core/errors";
