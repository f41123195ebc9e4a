"use strict";
// The registry's dashboard: services, instances and the registry's own state,
// kept live with blocking queries on /v1/discovery/services.
//
// Every value that comes from the registry is inserted as text (the DOM's
// text nodes), never as HTML: names and metadata are chosen by whoever
// registers, and the page must stay safe whatever they chose. The token lives
// in this tab's sessionStorage only and is sent as a Bearer token.
(() => {
  const TOKEN_KEY = "service-discovery-token";
  const WAIT = "30s";
  const RETRY_MS = 2000;
  // A write with a name no instance has: the write token gets 404, the
  // read-only token 403. It changes nothing either way.
  const CAPABILITY_PROBE = "/v1/discovery/unregister/ui-capability-check/none";

  const $ = (id) => document.getElementById(id);
  const state = {
    token: sessionStorage.getItem(TOKEN_KEY),
    canWrite: false,
    services: {},
    index: 0,
    generation: 0, // a new login ends the previous poll loop
    open: new Map(), // service name -> whether its <details> is open
  };

  function el(tag, props = {}, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props)) {
      if (key === "class") node.className = value;
      else if (key.startsWith("data-")) node.setAttribute(key, value);
      else node[key] = value;
    }
    node.append(...children); // strings become text nodes
    return node;
  }

  function api(path, options = {}) {
    const headers = { ...(options.headers || {}), Authorization: `Bearer ${state.token}` };
    return fetch(path, { ...options, headers, cache: "no-store" });
  }

  function relative(iso) {
    if (!iso) return "never";
    const seconds = Math.round((Date.now() - Date.parse(iso)) / 1000);
    if (seconds < 2) return "just now";
    if (seconds < 60) return `${seconds} s ago`;
    if (seconds < 3600) return `${Math.floor(seconds / 60)} min ago`;
    return `${Math.floor(seconds / 3600)} h ago`;
  }

  function timeCell(iso) {
    return el("td", { "data-time": iso || "", title: iso || "" }, relative(iso));
  }

  function refreshTimes() {
    for (const cell of document.querySelectorAll("[data-time]")) {
      cell.textContent = relative(cell.getAttribute("data-time"));
    }
  }

  function matches(filter, name, instance) {
    if (!filter) return true;
    const haystack = [name, instance.instance_id, instance.host, instance.status,
      ...Object.entries(instance.metadata || {}).flat()].join(" ").toLowerCase();
    return haystack.includes(filter);
  }

  function counts(instances) {
    const result = { healthy: 0, unhealthy: 0, unknown: 0 };
    for (const instance of instances) result[instance.status] = (result[instance.status] || 0) + 1;
    return result;
  }

  function actions(name, instance) {
    const cell = el("td");
    if (!state.canWrite) return cell;
    const path = `${encodeURIComponent(name)}/${encodeURIComponent(instance.instance_id)}`;
    if ("maintenance" in instance) {
      const on = instance.maintenance !== null;
      cell.append(el("button", {
        type: "button", class: "action", textContent: on ? "end maintenance" : "maintenance",
        onclick: () => act(on ? "End maintenance of" : "Put in maintenance", name, instance,
          `/v1/discovery/maintenance/${path}`, on ? "DELETE" : "PUT",
          on ? undefined : JSON.stringify({ reason: "dashboard" })),
      }));
    }
    cell.append(el("button", {
      type: "button", class: "action", textContent: "unregister",
      onclick: () => act("Unregister", name, instance, `/v1/discovery/unregister/${path}`, "DELETE"),
    }));
    return cell;
  }

  async function act(verb, name, instance, path, method, body) {
    if (!window.confirm(`${verb} ${name} / ${instance.instance_id}?`)) return;
    const headers = body ? { "Content-Type": "application/json" } : {};
    const response = await api(path, { method, headers, body });
    if (!response.ok) {
      const problem = await response.json().catch(() => ({}));
      window.alert(`${verb} failed: ${response.status} ${problem.message || ""}`);
    }
    // The poll loop shows the change when the index rises.
  }

  function instanceRow(name, instance) {
    const check = (instance.check && instance.check.type) || "http";
    const maintenance = instance.maintenance
      ? `${instance.maintenance.reason} (${relative(instance.maintenance.since)})` : "";
    const metadata = el("td");
    for (const [key, value] of Object.entries(instance.metadata || {})) {
      metadata.append(el("span", { class: "meta" }, `${key}=${value}`));
    }
    return el("tr", { "data-instance": instance.instance_id },
      el("td", {}, instance.instance_id),
      el("td", { class: `status ${instance.status}` }, instance.status),
      el("td", {}, `${instance.host}:${instance.port}`),
      el("td", {}, String(instance.load_percentage ?? "")),
      timeCell(instance.last_heartbeat),
      timeCell(instance.last_health_check),
      el("td", {}, check),
      el("td", {}, maintenance),
      metadata,
      actions(name, instance));
  }

  function serviceBlock(name, instances, filter, total) {
    const shown = instances.filter((instance) => matches(filter, name, instance));
    if (shown.length === 0) return null;
    const byStatus = counts(instances);
    const details = el("details", { class: "service", "data-service": name });
    details.open = state.open.has(name) ? state.open.get(name) : total <= 200 || Boolean(filter);
    details.addEventListener("toggle", () => state.open.set(name, details.open));
    const summary = el("summary", {}, el("span", { class: "name" }, name));
    for (const status of ["healthy", "unhealthy", "unknown"]) {
      summary.append(el("span", { class: `count status ${status}` }, `${byStatus[status]} ${status}`));
    }
    const head = el("tr", {}, ...["instance", "status", "address", "load", "last heartbeat",
      "last check", "check", "maintenance", "metadata", ""].map((label) => el("th", {}, label)));
    const table = el("table", {}, el("thead", {}, head),
      el("tbody", {}, ...shown.map((instance) => instanceRow(name, instance))));
    details.append(summary, table);
    return details;
  }

  function render() {
    const filter = $("filter").value.trim().toLowerCase();
    const names = Object.keys(state.services).sort();
    const all = names.flatMap((name) => state.services[name]);
    const byStatus = counts(all);
    $("summary").hidden = false;
    $("summary").replaceChildren(`${names.length} services, ${all.length} instances: `
      + `${byStatus.healthy} healthy, ${byStatus.unhealthy} unhealthy, ${byStatus.unknown} unknown`
      + (state.canWrite ? "" : " (read-only token)"));
    const blocks = names.map((name) => serviceBlock(name, state.services[name], filter, all.length));
    $("services").replaceChildren(...blocks.filter(Boolean));
  }

  function banner(text, stale = false) {
    $("banner").hidden = !text;
    $("banner").className = stale ? "stale" : "";
    $("banner").textContent = text;
  }

  async function refreshHealth(stale) {
    try {
      const health = await (await fetch("/health", { cache: "no-store" })).json();
      $("registry").textContent = `${health.frontend || ""} ${health.version || ""}`;
      const notes = [];
      if (stale) notes.push("store unreachable: showing the last known state");
      if (health.store && health.store.state && health.store.state !== "ok") {
        notes.push(`store: ${health.store.state}`);
      }
      if (health.self_preservation) {
        notes.push(`self-preservation: ${health.self_preservation_reason || "on"}`);
      }
      banner(notes.join("; "), stale || notes.length > 0);
    } catch (error) {
      banner("registry unreachable, retrying", true);
    }
  }

  function showLogin(message) {
    state.generation += 1;
    state.token = null;
    sessionStorage.removeItem(TOKEN_KEY);
    $("login").hidden = false;
    $("logout").hidden = true;
    $("summary").hidden = true;
    $("services").replaceChildren();
    $("login-error").textContent = message || "";
  }

  async function start() {
    const generation = ++state.generation;
    $("login").hidden = true;
    $("logout").hidden = false;
    const probe = await api(CAPABILITY_PROBE, { method: "DELETE" }).catch(() => null);
    if (probe && probe.status === 401) return showLogin("That token was refused.");
    state.canWrite = Boolean(probe && probe.status !== 403);
    state.index = 0;
    while (generation === state.generation) {
      let response;
      try {
        response = await api(`/v1/discovery/services?index=${state.index}&wait=${WAIT}`);
      } catch (error) {
        banner("registry unreachable, retrying", true);
        await new Promise((resolve) => setTimeout(resolve, RETRY_MS));
        continue;
      }
      if (generation !== state.generation) return;
      if (response.status === 401 || response.status === 403) {
        return showLogin("The registry refused the token.");
      }
      if (!response.ok) {
        banner(`registry answered ${response.status}, retrying`, true);
        await new Promise((resolve) => setTimeout(resolve, RETRY_MS));
        continue;
      }
      // An index lower than ours means the registry restarted: take it as is.
      state.index = Number(response.headers.get("X-Discovery-Index") || 0);
      state.services = (await response.json()).services || {};
      render();
      await refreshHealth(response.headers.get("X-Discovery-Stale") === "true");
    }
  }

  $("login").addEventListener("submit", (event) => {
    event.preventDefault();
    state.token = $("token").value.trim();
    $("token").value = "";
    sessionStorage.setItem(TOKEN_KEY, state.token);
    start();
  });
  $("logout").addEventListener("click", () => showLogin(""));
  $("filter").addEventListener("input", render);
  setInterval(refreshTimes, 1000);
  if (state.token) start(); else showLogin("");
})();
