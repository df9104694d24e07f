/**
 * The API's error bodies (services/api.service.ts errorBody) for calls that reached no node: a backend
 * is down (503), not Moleculer's 404 or 502; and the edge's pure parts: a field for every client
 * error, body-parser's failures named, the route table's methods per path, the CORS origin check.
 */
import { Errors } from "moleculer";
import ApiGateway from "moleculer-web";
import { aliasPatterns, bodyError, clientErrorResponse, errorBody, methodsFor, originAllowed } from "../../services/api.service";

const { BrokerDisconnectedError } = Errors as unknown as { BrokerDisconnectedError: new () => Error };

describe("errorBody for calls that reach no node", () => {
	test.each<[string, Error, string]>([
		["no node offers the service now", new Errors.ServiceNotAvailableError({ action: "manager.workers" }), "manager"],
		["the service is not registered (its node gone)", new Errors.ServiceNotFoundError({ action: "jobs.listJobs" }), "jobs"],
		["the transporter is down", new BrokerDisconnectedError(), "transporter"],
	])("%s: 503 naming the backend", (_what, err, backend) => {
		const { status, body } = errorBody(err);
		expect(status).toBe(503);
		expect(body).toMatchObject({ code: 503, type: "SERVICE_UNAVAILABLE", data: { backend } });
	});

	test("anything else keeps its code (a timeout: 504)", () => {
		expect(errorBody(new Errors.RequestTimeoutError({ action: "jobs.listJobs", nodeID: "api-1" })).status).toBe(504);
	});
});

describe("errorBody names a field for every client error", () => {
	test("an unknown key of a $$strict action names the key (fastest-validator reports it on the object)", () => {
		const err = new Errors.ValidationError("Parameters validation error!", "VALIDATION_ERROR", [
			{ type: "objectStrict", message: "The object '' contains forbidden keys: 'bogus, other'.", expected: "name, admin", actual: "bogus, other" },
		]);
		const { status, body } = errorBody(err);
		expect(status).toBe(422);
		expect((body.data as { field: unknown }).field).toBe("bogus");
	});

	test("moleculer-web's 404 (no route) names the path", () => {
		const { status, body } = errorBody(new ApiGateway.Errors.NotFoundError("NOT_FOUND", undefined));
		expect(status).toBe(404);
		expect(body.data).toEqual({ field: "path" });
	});

	test("a path parameter that does not decode is a 400 naming the path", () => {
		const { status, body } = errorBody(new ApiGateway.Errors.BadRequestError("UNABLE_DECODE_PARAM", { param: "%E0%A4%A" }));
		expect(status).toBe(400);
		expect(body.data).toEqual({ field: "path" });
	});

	test("an origin moleculer-web's CORS check refuses is a 403 naming origin", () => {
		const { status, body } = errorBody(new ApiGateway.Errors.ForbiddenError("ORIGIN_NOT_ALLOWED", undefined));
		expect(status).toBe(403);
		expect(body.data).toEqual({ field: "origin" });
	});
});

describe("bodyError: body-parser's failures, named", () => {
	const httpError = (status: number, props: Record<string, unknown>) =>
		Object.assign(new Error(typeof props.message === "string" ? props.message : "x"), { status, statusCode: status, expose: true }, props);

	test.each<[string, Error, number, string]>([
		["a body that is not the gzip it says it is", httpError(400, { message: "incorrect header check", code: "Z_DATA_ERROR" }), 400, "body"],
		["a body cut short", httpError(400, { message: "unexpected end of file", code: "Z_BUF_ERROR" }), 400, "body"],
		["a length that does not match", httpError(400, { type: "request.size.invalid", message: "request size did not match content length" }), 400, "body"],
		[
			"an encoding we do not read",
			httpError(415, { type: "encoding.unsupported", encoding: "br", message: 'unsupported content encoding "br"' }),
			415,
			"content-encoding",
		],
		["a charset we do not read", httpError(415, { type: "charset.unsupported", charset: "nope", message: 'unsupported charset "NOPE"' }), 415, "content-type"],
	])("%s: %i naming %s", (_what, err, code, field) => {
		const mapped = bodyError(err, "gzip") as { code: number; data: { field: string }; message: string };
		expect(mapped.code).toBe(code);
		expect(mapped.data.field).toBe(field);
	});

	test("invalid JSON and a body over the limit go on to errorBody as they were", () => {
		const parse = httpError(400, { type: "entity.parse.failed" });
		const large = httpError(413, { type: "entity.too.large" });
		expect(bodyError(parse)).toBe(parse);
		expect(bodyError(large)).toBe(large);
		const server = httpError(500, { type: "stream.encoding.set" });
		expect(bodyError(server)).toBe(server);
	});
});

describe("the route table as path matchers (OPTIONS)", () => {
	const patterns = aliasPatterns([
		{ path: "/", aliases: { "GET /health": "api.health" } },
		{ path: "/", aliases: { "GET /jobs": "a", "POST /jobs": "b", "GET /jobs/:id": "c", "DELETE /jobs/:id": "d", "POST /jobs/:id/run": "e" } },
	]);

	test.each<[string, string[]]>([
		["/health", ["GET"]],
		["/jobs", ["GET", "POST"]],
		["/jobs/", ["GET", "POST"]],
		["/jobs?limit=5", ["GET", "POST"]],
		["/jobs/abc", ["GET", "DELETE"]],
		["/jobs/a%00b", ["GET", "DELETE"]],
		["/jobs/abc/run", ["POST"]],
		["/jobs/abc/runs", []],
		["/jobs/a/b", []],
		["/", []],
		["/healthz", []],
	])("%s answers %j", (url, methods) => {
		expect(methodsFor(patterns, url)).toEqual(methods);
	});
});

describe("originAllowed", () => {
	test.each<[string, string[], boolean]>([
		["https://app.example.com", ["https://app.example.com"], true],
		["https://app.example.com", ["https://other.example.com"], false],
		["https://a.tools.example.com", ["https://*.tools.example.com"], true],
		["https://a.b.tools.example.com", ["https://*.tools.example.com"], true],
		["https://tools.example.com.evil.com", ["https://*.tools.example.com"], false],
		["https://evil.com/.tools.example.com", ["https://*.tools.example.com"], false],
		["http://a.tools.example.com", ["https://*.tools.example.com"], false],
		["null", ["https://app.example.com"], false],
		["https://anything.example", ["*"], true],
		["https://app.example.com", [], false],
	])("%s in %j: %s", (origin, allowed, ok) => {
		expect(originAllowed(origin, allowed)).toBe(ok);
	});
});

describe("clientErrorResponse: what Node's HTTP parser refuses, as the API's JSON error", () => {
	test.each<[string, number, string]>([
		["HPE_HEADER_OVERFLOW", 431, "headers"],
		["HPE_INVALID_METHOD", 400, "request"],
		["ERR_HTTP_REQUEST_TIMEOUT", 408, "request"],
	])("%s: %i naming %s", (code, status, field) => {
		const raw = clientErrorResponse({ code });
		const [head, body] = raw.split("\r\n\r\n");
		expect(head.split("\r\n")[0]).toMatch(new RegExp(`^HTTP/1.1 ${status} `));
		expect(head).toContain(`Content-Length: ${Buffer.byteLength(body)}`);
		expect(JSON.parse(body)).toMatchObject({ code: status, data: { field } });
	});
});

test("a 403 without a field (admins only) names authorization", () => {
	const { status, body } = errorBody(new Errors.MoleculerClientError("Only admins may manage users", 403, "FORBIDDEN", {}));
	expect(status).toBe(403);
	expect(body.data).toEqual({ field: "authorization" });
});
