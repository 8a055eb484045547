/**
 * Plans compiled at config load: inheritance resolved, route groups
 * expanded, and for every (plan, route) pair the list of limit rules that
 * apply, so the request path does one map lookup.
 */
import type { Config } from "../config/schema.js";
import { WINDOW_MS, WINDOW_NAMES, type WindowName } from "./window-math.js";

export interface CompiledWindow {
  readonly name: WindowName;
  readonly limit: number;
  readonly ms: number;
  /**
   * The counter key after its `{subject` hash tag: `}:<rule>:<window>:<limit>`. The limit is part
   * of the key so that a changed limit starts a fresh counter while unchanged ones survive a reload.
   */
  readonly keySuffix: string;
}

export interface CompiledRule {
  readonly name: string;
  readonly subject: "key" | "plan" | "client";
  readonly sliding: boolean;
  readonly shadow: boolean;
  readonly windows: readonly CompiledWindow[];
}

export interface PlanPolicy {
  readonly name: string;
  readonly apiAccess: boolean;
  /** Route names keys of this plan may call, or undefined for all. */
  readonly allowedRoutes: ReadonlySet<string> | undefined;
  /** Rules that apply on a route (empty array when none). */
  rulesFor(route: string): readonly CompiledRule[];
}

/** Limits a key carries itself: rule name → window → limit. */
export type KeyLimitOverrides = Readonly<Record<string, Partial<Record<WindowName, number>>>>;

type PlanConfig = Config["plans"][string];
type RuleConfig = PlanConfig["limits"][number];

const NO_RULES: readonly CompiledRule[] = Object.freeze([]);

export function compilePlans(config: Config): ReadonlyMap<string, PlanPolicy> {
  const routeNames = config.routes.map((r) => r.name);
  const expand = (names: readonly string[]) => new Set(names.flatMap((n) => config.route_groups[n] ?? [n]));
  const policies = new Map<string, PlanPolicy>();
  for (const name of Object.keys(config.plans)) {
    const plan = resolvePlan(config.plans, name);
    const allowedRoutes = plan.routes === undefined ? undefined : expand(plan.routes);
    const byRoute = new Map<string, CompiledRule[]>();
    for (const rule of plan.limits) {
      const compiled = compileRule(rule);
      const targets = rule.routes === undefined ? routeNames : [...expand(rule.routes)];
      for (const route of targets) {
        const list = byRoute.get(route) ?? [];
        list.push(compiled);
        byRoute.set(route, list);
      }
    }
    policies.set(name, {
      name,
      apiAccess: plan.api_access ?? true,
      allowedRoutes,
      rulesFor: (route) => byRoute.get(route) ?? NO_RULES,
    });
  }
  return policies;
}

/** Merges a plan with its ancestors: the child's fields win; a child rule replaces the parent's of the same name. */
function resolvePlan(plans: Config["plans"], name: string): PlanConfig {
  const plan = plans[name] as PlanConfig;
  if (plan.extends === undefined) return plan;
  const parent = resolvePlan(plans, plan.extends);
  const own = new Set(plan.limits.map((r) => r.name));
  return {
    ...parent,
    ...Object.fromEntries(Object.entries(plan).filter(([, v]) => v !== undefined)),
    limits: [...parent.limits.filter((r) => !own.has(r.name)), ...plan.limits],
  };
}

function compileRule(rule: RuleConfig): CompiledRule {
  return {
    name: rule.name,
    subject: rule.subject,
    sliding: rule.algorithm === "sliding",
    shadow: rule.shadow,
    windows: WINDOW_NAMES.filter((w) => rule.windows[w] !== undefined).map((w) =>
      compileWindow(rule.name, w, rule.windows[w] as number),
    ),
  };
}

function compileWindow(rule: string, name: WindowName, limit: number): CompiledWindow {
  return { name, limit, ms: WINDOW_MS[name], keySuffix: `}:${rule}:${name}:${limit}` };
}

/** The rule with a key's own limits applied (same rule when it has none). */
export function withOverrides(rule: CompiledRule, overrides: KeyLimitOverrides | undefined): CompiledRule {
  const own = overrides?.[rule.name];
  if (!own) return rule;
  return {
    ...rule,
    windows: rule.windows.map((w) => compileWindow(rule.name, w.name, own[w.name] ?? w.limit)),
  };
}
