import { ErrorCode, FerryError, type VmInfo } from "../../protocol/mod.js";

/** A VM selector as a job stores it: every field given must match (id exact, name exact or `*` glob, tag). */
export interface VmSelector {
  id?: string | undefined;
  name?: string | undefined;
  tag?: string | undefined;
}

/** `*` matches any run of characters (also none); everything else matches itself, case-sensitively. */
export function globToRegExp(pattern: string): RegExp {
  const body = pattern
    .split("*")
    .map((part) => part.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"))
    .join(".*");
  return new RegExp(`^${body}$`, "s");
}

function matcher(selector: VmSelector): (vm: VmInfo) => boolean {
  if (selector.id === undefined && selector.name === undefined && selector.tag === undefined) {
    // An empty selector would match every VM: refuse it rather than back up everything by accident.
    throw new FerryError(ErrorCode.BadRequest, "a VM selector needs an id, a name or a tag");
  }
  const name = selector.name === undefined ? undefined : selector.name.includes("*") ? globToRegExp(selector.name) : selector.name;
  return (vm) =>
    (selector.id === undefined || vm.id === selector.id) &&
    (name === undefined || (typeof name === "string" ? vm.name === name : name.test(vm.name))) &&
    (selector.tag === undefined || vm.tags.includes(selector.tag));
}

/**
 * The VMs matching any selector, each once and in inventory order, and the selectors that matched
 * nothing (in request order) so the caller can report them. No selectors: every VM.
 */
export function selectVms<S extends VmSelector>(vms: readonly VmInfo[], selectors: readonly S[]): { vms: VmInfo[]; unmatched: S[] } {
  if (selectors.length === 0) return { vms: [...vms], unmatched: [] };
  const matchers = selectors.map(matcher);
  const hits = new Array<boolean>(selectors.length).fill(false);
  const selected: VmInfo[] = [];
  for (const vm of vms) {
    let picked = false;
    matchers.forEach((matches, i) => {
      if (matches(vm)) {
        hits[i] = true;
        picked = true;
      }
    });
    if (picked) selected.push(vm);
  }
  return { vms: selected, unmatched: selectors.filter((_, i) => !hits[i]) };
}
