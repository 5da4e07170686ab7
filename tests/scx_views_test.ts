/**
 * sched_ext views on this machine: the live backend against whatever this
 * kernel's `/sys/kernel/sched_ext` holds (the CI host's 6.18 has none: every
 * section must say so), the text and JSON forms of those views, and the
 * layout the guest backend takes from a real kernel's BTF: the 7.3 guest
 * kernel's (fetched by tools/vm/setup.sh) and this host's.
 */

import assert from "node:assert/strict";
import { BpfSyscallAccessor } from "../src/accessor/syscall.ts";
import {
  readLiveScxViews,
  SCX_SYSFS,
  scxAvailable,
  scxViews,
} from "../src/accessor/scx.ts";
import { parseJsonExact } from "../src/btf/json.ts";
import { Btf, loadKernelBtf } from "../src/btf/mod.ts";
import { scxViewsToJson, scxViewsToText } from "../src/dump/scx_format.ts";
import { scxLayoutFromBtf } from "../src/guest/scx/layout.ts";
import { ignoreUnless, REQUIRE_ALL } from "./_support/env.ts";

const K73 = new URL("../.vm-cache/", import.meta.url).pathname;
const SOURCE = `${K73}linux-7.3-src`;
const K73_BTF = `${K73}k73/vmlinux.btf`;
const exists = (path: string): boolean => {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
};
const hostHasScx = exists(SCX_SYSFS);

Deno.test("live scx views say what this kernel's sysfs holds, section by section", () => {
  const views = readLiveScxViews();
  assert.equal(views.source, "live");
  if (!hostHasScx) {
    for (const section of [views.root, views.events, views.cpus, views.dsqs]) {
      assert.ok(!scxAvailable(section));
      assert.match(
        section.unavailable,
        /^this kernel has no \/sys\/kernel\/sched_ext \(built without CONFIG_SCHED_CLASS_EXT\)$/,
      );
    }
    return;
  }
  assert.ok(scxAvailable(views.root), JSON.stringify(views.root));
  assert.equal(
    views.root.state,
    Deno.readTextFileSync(`${SCX_SYSFS}/state`).trim(),
  );
  assert.ok(!scxAvailable(views.cpus));
  assert.match(views.cpus.unavailable, /does not expose it in sysfs/);
});

Deno.test(
  {
    name: "scxViews on the live backend is the sysfs reading",
    ignore: ignoreUnless("bpf"),
  },
  () => {
    assert.deepEqual(
      scxViews(new BpfSyscallAccessor()),
      readLiveScxViews(),
    );
  },
);

Deno.test("scx views as text say which sections are unavailable and why; JSON round-trips", () => {
  const views = readLiveScxViews();
  const text = scxViewsToText(views);
  const lines = text.trimEnd().split("\n");
  if (!hostHasScx) {
    assert.deepEqual(lines.map((l) => l.split(":")[0]), [
      "sched_ext",
      "events",
      "cpus",
      "dsqs",
    ]);
    for (const line of lines) assert.match(line, /: unavailable \(.+\)$/);
  }
  assert.deepEqual(parseJsonExact(scxViewsToJson(views)), views);
  // a bigint beyond 2^53 stays exact
  const big = {
    ...views,
    events: { counters: [{ name: "SCX_EV_X", value: (1n << 64n) - 1n }] },
  };
  assert.match(scxViewsToJson(big), /"value":18446744073709551615/);
  assert.match(
    scxViewsToText(big),
    /events:\n {2}1 of 1 counters non-zero\n {4}SCX_EV_X 18446744073709551615\n/,
  );
});

Deno.test("this host's BTF tells the guest views whether sched_ext is there", () => {
  const layout = scxLayoutFromBtf(loadKernelBtf());
  assert.equal(typeof layout === "string", !hostHasScx);
  if (typeof layout === "string") {
    assert.match(layout, /no struct scx_sched/);
  }
});

Deno.test(
  {
    name:
      "the 7.3 kernel's BTF gives the SCX_EVENTS_LIST counters in the order its source prints them, and every offset",
    ignore: !REQUIRE_ALL && !(exists(K73_BTF) && exists(SOURCE)),
  },
  () => {
    const layout = scxLayoutFromBtf(Btf.parse(Deno.readFileSync(K73_BTF)));
    assert.ok(typeof layout !== "string", String(layout));
    // SCX_EVENTS_LIST in kernel/sched/ext/internal.h is the sysfs order
    const internal = Deno.readTextFileSync(
      `${SOURCE}/kernel/sched/ext/internal.h`,
    );
    const list = /#define SCX_EVENTS_LIST\(SCX_EVENT\)([\s\S]*?)\n\n/.exec(
      internal,
    )?.[1];
    assert.ok(list, "no SCX_EVENTS_LIST in internal.h");
    const names = [...list.matchAll(/SCX_EVENT\((SCX_EV_\w+)\)/g)].map((m) =>
      m[1]
    );
    assert.ok(names.length >= 10);
    assert.deepEqual(layout.events.map((e) => e.name), names);
    // scx_enable_state_str[] names: the enumerators, lower case
    assert.deepEqual([...layout.enableStates.values()], [
      "SCX_ENABLING",
      "SCX_ENABLED",
      "SCX_DISABLING",
      "SCX_DISABLED",
    ]);
    assert.equal(layout.exitKinds.get(67), "SCX_EXIT_SYSRQ");
    assert.equal(layout.exitKinds.get(1026), "SCX_EXIT_ERROR_STALL");
    assert.ok(
      layout.taskFlagBits.some(([bit, n]) =>
        bit === 1 && n === "SCX_TASK_QUEUED"
      ),
    );
    // the state field's values are states, not flag bits
    assert.ok(!layout.taskFlagBits.some(([, n]) => n === "SCX_TASK_ENABLED"));
    assert.ok(layout.taskStates.some(([, n]) => n === "SCX_TASK_ENABLED"));
    assert.equal(layout.dsqIdNames.get((1n << 63n) | 1n), "SCX_DSQ_GLOBAL");
  },
);
