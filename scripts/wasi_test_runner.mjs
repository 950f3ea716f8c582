// Cargo's runner for wasm32-wasip1 test binaries (`make unit-wasm`): runs the
// plugin's ordinary #[test]s, compiled to the 32-bit target that ships, under
// Node's WASI (preview1). Usage: node wasi_test_runner.mjs <test.wasm> [libtest args...]
// The repository root is preopened at its own absolute path so tests that read
// tests/corpus through CARGO_MANIFEST_DIR see the same files as natively.
import { readFile } from "node:fs/promises";
import { WASI } from "node:wasi";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const [wasmPath, ...args] = process.argv.slice(2);
if (!wasmPath) {
  console.error("usage: wasi_test_runner.mjs <test.wasm> [args...]");
  process.exit(2);
}
const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const wasi = new WASI({
  version: "preview1",
  args: [wasmPath, ...args],
  // Tests are not captured: wasm32-wasip1 panics abort, so a failing test
  // ends the run and a captured panic message would be lost with it.
  env: { RUST_BACKTRACE: process.env.RUST_BACKTRACE ?? "0", RUST_TEST_NOCAPTURE: "1" },
  preopens: { [root]: root },
  returnOnExit: true,
});
const module = await WebAssembly.compile(await readFile(wasmPath));
// The glue (compiled on wasm32 only) links proxy-wasm's host imports (`env`);
// pure-logic tests never reach them, so each is a stub that fails loudly.
const imports = wasi.getImportObject();
for (const imp of WebAssembly.Module.imports(module)) {
  if (imp.module in imports && imp.module !== "env") continue;
  imports[imp.module] ??= {};
  imports[imp.module][imp.name] = () => {
    throw new Error(`host import ${imp.module}.${imp.name} called in a unit test`);
  };
}
const instance = await WebAssembly.instantiate(module, imports);
let code;
try {
  // The plugin exports `_initialize` (its proxy-wasm reactor entry); the test
  // harness is a command (`_start`), and WASI refuses a module with both.
  const { _initialize, ...exports } = instance.exports;
  code = wasi.start({ exports });
} catch (err) {
  // A panic aborts (wasm32-wasip1 is panic=abort): the trap lands here after
  // libtest printed the panic message; report it as a failed run.
  console.error(`wasm trap: ${err && err.message ? err.message : err}`);
  code = 101;
}
process.exit(code);
