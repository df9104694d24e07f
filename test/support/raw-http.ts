/**
 * One HTTP request exactly as given, through node:http (not fetch): any method, a body on any
 * method, raw bytes, any header. The answer's body parsed as JSON when it is JSON.
 */
import * as http from "node:http";

export interface RawAnswer {
	status: number;
	body: any;
	text: string;
	headers: http.IncomingHttpHeaders;
}

export function rawRequest(baseUrl: string, method: string, path: string, headers: Record<string, string> = {}, body?: Buffer): Promise<RawAnswer> {
	const u = new URL(baseUrl);
	return new Promise((resolve, reject) => {
		const req = http.request(
			{
				host: u.hostname,
				port: u.port,
				method,
				path,
				agent: false,
				headers: { ...headers, ...(body !== undefined ? { "content-length": String(body.length) } : {}) },
			},
			(res) => {
				const chunks: Buffer[] = [];
				res.on("data", (c: Buffer) => chunks.push(c));
				res.on("error", reject);
				res.on("end", () => {
					const text = Buffer.concat(chunks).toString("utf8");
					let parsed: unknown = text;
					try {
						parsed = text ? JSON.parse(text) : null;
					} catch {
						/* not JSON */
					}
					resolve({ status: res.statusCode ?? 0, body: parsed, text, headers: res.headers });
				});
			},
		);
		req.on("error", reject);
		req.end(body);
	});
}
