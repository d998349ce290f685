// An independent TUF client reading a repository fwctl published:
// tuf-js's Updater (TUF 1.0 client workflow: root chain, timestamp,
// snapshot, targets, delegations, target download with length and hash
// checks), driven by test/tufjs_test.go.
//
//   node client.mjs METADATA_URL TARGETS_URL METADATA_DIR TARGET_DIR PATH...
//
// METADATA_DIR holds the trusted root.json. Prints one JSON line per
// target: {"path", "length", "file"} or {"path", "error"}; exits 1 if the
// refresh fails (with {"error"}), 2 if a target fails.
import { Updater } from 'tuf-js';

const [metadataBaseUrl, targetBaseUrl, metadataDir, targetDir, ...paths] = process.argv.slice(2);
const updater = new Updater({ metadataBaseUrl, targetBaseUrl, metadataDir, targetDir });
const say = (o) => console.log(JSON.stringify(o));
try {
  await updater.refresh();
} catch (e) {
  say({ error: `${e.constructor.name}: ${e.message}` });
  process.exit(1);
}
let failed = false;
for (const path of paths) {
  try {
    const info = await updater.getTargetInfo(path);
    if (!info) throw new Error('no such target');
    const file = await updater.downloadTarget(info);
    say({ path, length: info.length, file });
  } catch (e) {
    say({ path, error: `${e.constructor.name}: ${e.message}` });
    failed = true;
  }
}
process.exit(failed ? 2 : 0);
