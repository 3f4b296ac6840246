// The shared conformance set (clients/conformance/README.md), run by @latchkey/verify.
// tests/api/verifiers.rs starts latchkey, writes the steps into LATCHKEY_CONFORMANCE_DIR
// and runs this file from a scratch project where the packed tarball is installed, so
// the import below is the installed package. Without that variable it is skipped: the
// set only exists against a live latchkey.
import { test } from "node:test";
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { existsSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { createVerifier, requireStepUp, VerifyError } from "@latchkey/verify";

const dir = process.env.LATCHKEY_CONFORMANCE_DIR;
const me = process.env.LATCHKEY_VERIFIER ?? "node";

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function waitForJson(path, withinMs) {
  const started = Date.now();
  while (Date.now() - started < withinMs) {
    if (existsSync(path)) return JSON.parse(readFileSync(path, "utf8"));
    await sleep(10);
  }
  throw new Error(`${path} did not appear within ${withinMs} ms`);
}

function writeJson(name, value) {
  const tmp = join(dir, `.${name}.tmp`);
  writeFileSync(tmp, JSON.stringify(value));
  renameSync(tmp, join(dir, name));
}

async function verdictOf(verifier, token, stepUp) {
  try {
    const claims = await verifier.verify(token);
    if (stepUp) requireStepUp(claims, { maxAge: stepUp.max_age });
    return "valid";
  } catch (e) {
    assert.ok(e instanceof VerifyError, `not a VerifyError: ${e}`);
    return e.code;
  }
}

const b64 = (v) => Buffer.from(typeof v === "string" ? v : JSON.stringify(v)).toString("base64url");

async function runCase(verifier, c) {
  const started = Date.now();
  if (c.random_kids) {
    let got = "invalid_token";
    for (let i = 0; i < c.random_kids; i++) {
      const t = `${b64({ typ: "at+jwt", alg: "ES256", kid: `random-${i}-${randomUUID()}` })}.${b64({ sub: "x" })}.${b64("sig")}`;
      const v = await verdictOf(verifier, t);
      if (v !== "invalid_token") {
        got = v;
        break;
      }
    }
    return { name: c.name, verdict: got, ms: Date.now() - started, jwks_fetches: verifier.stats().jwksFetches };
  }
  for (;;) {
    const got = await verdictOf(verifier, c.token, c.step_up);
    if (got === c.expect || Date.now() - started >= (c.within_ms ?? 0)) {
      const ms = c.since_ms !== undefined ? Date.now() - c.since_ms : Date.now() - started;
      return { name: c.name, verdict: got, ms, at_ms: Date.now() };
    }
    await sleep(10);
  }
}

test("the conformance set against a live latchkey", { skip: !dir && "LATCHKEY_CONFORMANCE_DIR is not set" }, async () => {
  const installed = fileURLToPath(import.meta.resolve("@latchkey/verify"));
  console.log(`@latchkey/verify from ${installed}`);
  const config = await waitForJson(join(dir, "config.json"), 5000);
  const verifier = await createVerifier({
    issuer: config.issuer,
    audience: config.audience,
    resourceServer: config.resource_server,
    feed: "stream",
    leeway: config.leeway_s,
    maxStaleness: config.max_staleness_ms,
    minRefetchInterval: config.min_refetch_interval_ms,
  });
  const failures = [];
  try {
    for (let i = 0; ; i++) {
      const step = await waitForJson(join(dir, `step-${i}.json`), 120_000);
      const results = [];
      if (step.only === null || step.only === me) {
        for (const c of step.cases) {
          const r = await runCase(verifier, c);
          results.push(r);
          if (r.verdict !== c.expect) failures.push(`${step.name} / ${c.name}: ${r.verdict}, expected ${c.expect}`);
          if (c.within_ms || c.random_kids) console.log(`${step.name} / ${c.name}: ${r.verdict} after ${r.ms} ms${r.jwks_fetches !== undefined ? ` (${r.jwks_fetches} JWKS fetches so far)` : ""}`);
        }
      }
      writeJson(`result-${me}-${i}.json`, { verifier: me, step: i, results });
      if (step.last) break;
    }
  } finally {
    verifier.close();
  }
  assert.deepEqual(failures, []);
});
