/**
 * Object storage for script and binary executables, keyed by content digest. Implemented on the
 * local object folder (embedded default) and on S3 (@aws-sdk/client-s3).
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
}
