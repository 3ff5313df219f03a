//! Stage two of loading: the rules that need the whole scenario. The loader
//! follows the timeline (entries by `at`, then file order) and resolves every
//! name an action or expectation uses at its instant: users, templates,
//! versions (published ones from their instant on), presets, workspaces
//! (created ones from their instant on; a name may be reused only once its
//! holder may be gone) and chats. Expectations see what happened strictly
//! before their `at`. Also `settle` against the settings.

use engine::time::Span;

use super::error::{Origin, Spanned};
use super::model::{Action, Expect, Owner, Point, ReplicaTarget, Scenario, PREBUILDS_OWNER};
use super::parse::TopOrigins;
use super::reader::{unknown_name, unknown_name_in, Cx};
use super::yaml::shorten;

pub(crate) fn check(cx: &mut Cx, s: &Scenario, top: &TopOrigins) {
    check_settle(cx, s, top);
    let mut state = State::from_world(s);
    for name in s.provisioners.templates.keys() {
        if let Some(o) = s.provisioners.templates.get(name) {
            state.template(cx, &Spanned::new(name.clone(), o.origin));
        }
    }
    let mut entries: Vec<usize> = (0..s.timeline.len()).collect();
    entries.sort_by_key(|&i| (s.timeline[i].at, i));
    let end = s.run_end();
    let mut expectations: Vec<usize> = (0..s.expect.len()).collect();
    expectations.sort_by_key(|&i| (s.expect[i].at.unwrap_or(end), i));
    let mut next_entry = entries.iter().peekable();
    for &e in &expectations {
        let at = s.expect[e].at.unwrap_or(end);
        while let Some(&&i) = next_entry.peek() {
            if s.timeline[i].at >= at {
                break;
            }
            state.apply(cx, s, i);
            next_entry.next();
        }
        state.expectation(cx, s, e, at);
    }
    for &i in next_entry {
        state.apply(cx, s, i);
    }
}

fn check_settle(cx: &mut Cx, s: &Scenario, top: &TopOrigins) {
    let min = s.settle_min();
    if s.settle >= min {
        return;
    }
    let interval = s.settings.lifecycle_interval.max(s.settings.reconcile_interval);
    let mut why = format!(
        "2 × {interval} (the longer of `lifecycle_interval` and `reconcile_interval`) + {} (the longest build duration) + 1m",
        s.build_duration_max()
    );
    if s.uses_chats() {
        why.push_str(&format!(
            ", and with chats at least `chat_stale_after` + 1m ({})",
            s.settings.chat_stale_after + Span::from_mins(1)
        ));
    }
    let (origin, written) = match top.settle {
        Some(origin) => (origin, ""),
        None => (top.root, " (the default)"),
    };
    cx.error(origin, format!("`settle` is {}{written}, expected at least {min}: {why}", s.settle));
}

struct VersionState {
    name: String,
    origin: Origin,
    presets: Vec<String>,
}

struct TemplateState {
    name: String,
    versions: Vec<VersionState>,
    /// `time_til_dormant_autodelete` was non-zero at some instant so far.
    autodelete_ever: bool,
}

/// One workspace that held a name.
struct Incarnation {
    name: String,
    origin: Origin,
    template: String,
    /// Deleted already, or possibly by now: a `delete` action, the reconciler
    /// (prebuilds) or auto-delete (its template's autodelete was on).
    may_be_gone: bool,
    prebuild: bool,
}

struct State {
    users: Vec<String>,
    templates: Vec<TemplateState>,
    workspaces: Vec<Incarnation>,
    chats: Vec<(String, Origin)>,
}

fn at_text(at: Span) -> String {
    Point::from_offset(at).to_string()
}

impl State {
    fn from_world(s: &Scenario) -> State {
        let templates = s
            .world
            .templates
            .iter()
            .map(|t| TemplateState {
                name: t.name.value.clone(),
                versions: t
                    .versions
                    .iter()
                    .map(|v| VersionState {
                        name: v.name.value.clone(),
                        origin: v.name.origin,
                        presets: t
                            .presets
                            .iter()
                            .filter(|p| p.version.value == v.name.value)
                            .map(|p| p.name.value.clone())
                            .collect(),
                    })
                    .collect(),
                autodelete_ever: !t.settings.time_til_dormant_autodelete.value.is_zero(),
            })
            .collect();
        let workspaces = s
            .world
            .workspaces
            .iter()
            .map(|w| Incarnation {
                name: w.name.value.clone(),
                origin: w.name.origin,
                template: w.template.value.clone(),
                may_be_gone: w.is_deleted(),
                prebuild: w.is_prebuild(),
            })
            .collect();
        State {
            users: s.world.users.iter().map(|u| u.name.value.clone()).collect(),
            templates,
            workspaces,
            chats: s.world.chats.iter().map(|c| (c.name.value.clone(), c.name.origin)).collect(),
        }
    }

    fn user(&self, cx: &mut Cx, name: &Spanned<String>) {
        if !self.users.contains(&name.value) {
            let known: Vec<&str> = self.users.iter().map(String::as_str).collect();
            cx.error(name.origin, unknown_name("user", &name.value, &known));
        }
    }

    fn template(&self, cx: &mut Cx, name: &Spanned<String>) -> Option<usize> {
        let found = self.templates.iter().position(|t| t.name == name.value);
        if found.is_none() {
            let known: Vec<&str> = self.templates.iter().map(|t| t.name.as_str()).collect();
            cx.error(name.origin, unknown_name("template", &name.value, &known));
        }
        found
    }

    /// `version` of template `t` (or its active version) and, when given, its preset.
    fn version_and_preset(
        &self,
        cx: &mut Cx,
        t: usize,
        version: Option<&Spanned<String>>,
        preset: Option<&Spanned<String>>,
    ) {
        let template = &self.templates[t];
        let found = match version {
            Some(v) => {
                let found = template.versions.iter().find(|x| x.name == v.value);
                if found.is_none() {
                    let known: Vec<&str> = template.versions.iter().map(|x| x.name.as_str()).collect();
                    cx.error(
                        v.origin,
                        unknown_name_in("version", &v.value, &format!("of template `{}`", template.name), &known),
                    );
                }
                found
            }
            None => template.versions.last(),
        };
        if let (Some(p), Some(v)) = (preset, found) {
            if !v.presets.contains(&p.value) {
                let known: Vec<&str> = v.presets.iter().map(String::as_str).collect();
                cx.error(
                    p.origin,
                    unknown_name_in(
                        "preset",
                        &p.value,
                        &format!("in version `{}` of template `{}`", v.name, template.name),
                        &known,
                    ),
                );
            }
        }
    }

    fn workspace(&self, cx: &mut Cx, s: &Scenario, name: &Spanned<String>, at: Span, seen_at: &str) -> bool {
        if self.workspaces.iter().any(|w| w.name == name.value) {
            return true;
        }
        let later = s.timeline.iter().find_map(|e| match &e.action {
            Action::CreateWorkspace(c) if c.name.value == name.value => Some((e.at, c.name.origin)),
            _ => None,
        });
        match later {
            Some((created, origin)) => cx.error(
                name.origin,
                format!(
                    "workspace `{}` does not exist yet {seen_at} {}: it is created at {} ({origin})",
                    shorten(&name.value),
                    at_text(at),
                    at_text(created)
                ),
            ),
            None => {
                let mut known: Vec<&str> = Vec::new();
                for w in &self.workspaces {
                    if !known.contains(&w.name.as_str()) {
                        known.push(&w.name);
                    }
                }
                cx.error(name.origin, unknown_name("workspace", &name.value, &known));
            }
        }
        false
    }

    fn chat(&self, cx: &mut Cx, name: &str, origin: Origin) {
        if !self.chats.iter().any(|(c, _)| c == name) {
            let mut known: Vec<&str> = Vec::new();
            for (chat, _) in &self.chats {
                if !known.contains(&chat.as_str()) {
                    known.push(chat);
                }
            }
            cx.error(origin, unknown_name("chat", name, &known));
        }
    }

    fn template_autodelete(&self, template: &str) -> bool {
        self.templates.iter().any(|t| t.name == template && t.autodelete_ever)
    }

    /// Checks timeline entry `i` against the state, then applies what it declares.
    fn apply(&mut self, cx: &mut Cx, s: &Scenario, i: usize) {
        let entry = &s.timeline[i];
        let at = entry.at;
        if let Some(replica) = entry.action.replica() {
            if let ReplicaTarget::ChatOwner(chat) = &replica.value {
                self.chat(cx, chat, replica.origin);
            }
        }
        let user = |state: &State, cx: &mut Cx, user: &Option<Spanned<String>>| {
            if let Some(user) = user {
                state.user(cx, user);
            }
        };
        match &entry.action {
            Action::Activity { workspace, .. } => {
                self.workspace(cx, s, workspace, at, "at");
            }
            Action::Start(b) | Action::Stop(b) => {
                self.workspace(cx, s, &b.workspace, at, "at");
                user(self, cx, &b.user);
            }
            Action::Delete(b) => {
                self.workspace(cx, s, &b.workspace, at, "at");
                user(self, cx, &b.user);
                for w in self.workspaces.iter_mut().filter(|w| w.name == b.workspace.value) {
                    w.may_be_gone = true;
                }
            }
            Action::Extend { workspace, user: u, .. } => {
                self.workspace(cx, s, workspace, at, "at");
                user(self, cx, u);
            }
            Action::UpdateWorkspace(u) => {
                self.workspace(cx, s, &u.name, at, "at");
                user(self, cx, &u.user);
            }
            Action::CreateWorkspace(c) => {
                if c.owner.value == PREBUILDS_OWNER {
                    cx.error(
                        c.owner.origin,
                        "`owner` of `create_workspace` is a user; prebuilds are created by the reconciler",
                    );
                } else {
                    self.user(cx, &c.owner);
                }
                if let Some(t) = self.template(cx, &c.template) {
                    self.version_and_preset(cx, t, c.version.as_ref(), c.preset.as_ref());
                }
                let holder = self.workspaces.iter().find(|w| {
                    w.name == c.name.value && !w.may_be_gone && !w.prebuild && !self.template_autodelete(&w.template)
                });
                if let Some(holder) = holder {
                    cx.error(
                        c.name.origin,
                        format!(
                            "workspace name `{}` is taken at {}: the workspace declared at {} is not deleted by then (names are unique among workspaces not deleted)",
                            shorten(&c.name.value),
                            at_text(at),
                            holder.origin
                        ),
                    );
                }
                self.workspaces.push(Incarnation {
                    name: c.name.value.clone(),
                    origin: c.name.origin,
                    template: c.template.value.clone(),
                    may_be_gone: false,
                    prebuild: false,
                });
            }
            Action::UpdateTemplate(u) => {
                if let Some(t) = self.template(cx, &u.name) {
                    if u.changes.time_til_dormant_autodelete.as_ref().is_some_and(|d| !d.value.is_zero()) {
                        self.templates[t].autodelete_ever = true;
                    }
                }
            }
            Action::PublishVersion(p) => {
                if let Some(t) = self.template(cx, &p.template) {
                    let template = &mut self.templates[t];
                    if let Some(first) = template.versions.iter().find(|v| v.name == p.version.name.value) {
                        cx.error(
                            p.version.name.origin,
                            format!(
                                "duplicate version `{}` of template `{}` (first declared at {})",
                                shorten(&p.version.name.value),
                                template.name,
                                first.origin
                            ),
                        );
                    } else {
                        template.versions.push(VersionState {
                            name: p.version.name.value.clone(),
                            origin: p.version.name.origin,
                            presets: p.presets.iter().map(|x| x.name.value.clone()).collect(),
                        });
                    }
                }
            }
            Action::SetUser(u) => self.user(cx, &u.name),
            Action::Chat(c) => {
                if c.op == super::model::ChatOp::Create {
                    if let Some((_, first)) = self.chats.iter().find(|(name, _)| *name == c.name.value) {
                        cx.error(
                            c.name.origin,
                            format!("duplicate chat `{}` (first declared at {first})", shorten(&c.name.value)),
                        );
                    }
                    if let Some(owner) = &c.owner {
                        self.user(cx, owner);
                    }
                    if let Some(ws) = &c.workspace {
                        self.workspace(cx, s, ws, at, "at");
                    }
                    self.chats.push((c.name.value.clone(), c.name.origin));
                } else {
                    self.chat(cx, &c.name.value, c.name.origin);
                }
            }
            Action::ProvisionerFault(p) => {
                if let Some(t) = &p.template {
                    self.template(cx, t);
                }
            }
            Action::SetSetting { .. }
            | Action::StoreFault(_)
            | Action::PoolHog { .. }
            | Action::PubsubFault { .. }
            | Action::NotificationFault { .. }
            | Action::Shutdown { .. }
            | Action::Crash { .. }
            | Action::Restart { .. }
            | Action::ClockSkew { .. } => {}
        }
    }

    /// Versions named `name` in `template` (or any template): `(template, version)`.
    fn versions_named(&self, template: Option<&str>, name: &str) -> Vec<(&str, &str)> {
        self.templates
            .iter()
            .filter(|t| template.is_none_or(|x| t.name == x))
            .flat_map(|t| t.versions.iter().filter(|v| v.name == name).map(move |v| (t.name.as_str(), v.name.as_str())))
            .collect()
    }

    /// A version filter: it must exist (in `templates` when given) and, with
    /// `unambiguous`, be in one template only when no template pins it.
    fn version_filter(
        &self,
        cx: &mut Cx,
        templates: Option<&[String]>,
        version: &Spanned<String>,
        pin: &str,
        unambiguous: bool,
    ) -> bool {
        let found: Vec<(&str, &str)> = match templates {
            Some(names) => names.iter().flat_map(|t| self.versions_named(Some(t), &version.value)).collect(),
            None => self.versions_named(None, &version.value),
        };
        if found.is_empty() {
            let mut known: Vec<&str> = self
                .templates
                .iter()
                .filter(|t| templates.is_none_or(|names| names.contains(&t.name)))
                .flat_map(|t| t.versions.iter().map(|v| v.name.as_str()))
                .collect();
            known.sort();
            known.dedup();
            cx.error(version.origin, unknown_name("version", &version.value, &known));
            return false;
        }
        if unambiguous && templates.is_none() && found.len() > 1 {
            let list: Vec<String> = found.iter().map(|(t, _)| format!("`{t}`")).collect();
            cx.error(
                version.origin,
                format!(
                    "version `{}` is ambiguous: templates {} both have it, expected {pin} to tell them apart",
                    shorten(&version.value),
                    list.join(" and ")
                ),
            );
        }
        true
    }

    /// Presets matching the filters: `(template, version, preset)`.
    fn presets(&self, template: Option<&str>, version: Option<&str>, preset: Option<&str>) -> Vec<(&str, &str, &str)> {
        let mut out = Vec::new();
        for t in self.templates.iter().filter(|t| template.is_none_or(|x| t.name == x)) {
            for v in t.versions.iter().filter(|v| version.is_none_or(|x| v.name == x)) {
                for p in v.presets.iter().filter(|p| preset.is_none_or(|x| *p == x)) {
                    out.push((t.name.as_str(), v.name.as_str(), p.as_str()));
                }
            }
        }
        out
    }

    /// Template and version filters of `prebuilds`/`preset`, then the preset:
    /// exactly one must match when `require_one`, or when a preset is named.
    fn preset_filters(
        &self,
        cx: &mut Cx,
        template: Option<&Spanned<String>>,
        version: Option<&Spanned<String>>,
        preset: Option<&Spanned<String>>,
        require_one: bool,
        origin: Origin,
    ) {
        if let Some(t) = template {
            if self.template(cx, t).is_none() {
                return;
            }
        }
        if let Some(v) = version {
            let pinned = template.map(|t| vec![t.value.clone()]);
            if !self.version_filter(cx, pinned.as_deref(), v, "`template`", preset.is_none() && !require_one) {
                return;
            }
        }
        if preset.is_none() && !require_one {
            return;
        }
        let found = self.presets(
            template.map(|t| t.value.as_str()),
            version.map(|v| v.value.as_str()),
            preset.map(|p| p.value.as_str()),
        );
        let at = preset.map_or(origin, |p| p.origin);
        match found.len() {
            1 => {}
            0 => {
                let known: Vec<&str> = {
                    let mut names: Vec<&str> = self
                        .presets(template.map(|t| t.value.as_str()), version.map(|v| v.value.as_str()), None)
                        .into_iter()
                        .map(|(_, _, p)| p)
                        .collect();
                    names.sort();
                    names.dedup();
                    names
                };
                match preset {
                    Some(p) => cx.error(at, unknown_name("preset", &p.value, &known)),
                    None => cx.error(at, "no preset matches these filters"),
                }
            }
            _ => {
                let list: Vec<String> = found.iter().map(|(t, v, p)| format!("`{p}` of `{t}` version `{v}`")).collect();
                let what = preset.map_or("the preset".to_owned(), |p| format!("preset `{}`", shorten(&p.value)));
                cx.error(at, format!("{what} is ambiguous: it matches {}, expected `template`, `version` or `name` to tell them apart", list.join(", ")));
            }
        }
    }

    fn expectation(&self, cx: &mut Cx, s: &Scenario, e: usize, at: Span) {
        let expectation = &s.expect[e];
        let seen = "for an expectation at";
        match &expectation.kind {
            Expect::Builds(b) => {
                let mut templates = None;
                if let Some(w) = &b.workspace {
                    if self.workspace(cx, s, w, at, seen) {
                        templates = Some(
                            self.workspaces
                                .iter()
                                .filter(|x| x.name == w.value)
                                .map(|x| x.template.clone())
                                .collect::<Vec<_>>(),
                        );
                    }
                }
                if let Some(v) = &b.version {
                    if b.workspace.is_none() || templates.is_some() {
                        self.version_filter(cx, templates.as_deref(), v, "`workspace`", true);
                    }
                }
            }
            Expect::Notifications(n) => {
                if let Some(w) = &n.workspace {
                    self.workspace(cx, s, w, at, seen);
                }
                if let Some(u) = &n.user {
                    self.user(cx, u);
                }
            }
            Expect::Workspace(w) => {
                if self.workspace(cx, s, &w.name, at, seen) {
                    if let Some(v) = &w.version {
                        let templates: Vec<String> = self
                            .workspaces
                            .iter()
                            .filter(|x| x.name == w.name.value)
                            .map(|x| x.template.clone())
                            .collect();
                        self.version_filter(cx, Some(&templates), v, "`template`", true);
                    }
                }
                if let Some(Spanned { value: Owner::User(user), origin }) = &w.owner {
                    self.user(cx, &Spanned::new(user.clone(), *origin));
                }
            }
            Expect::Prebuilds(p) => {
                self.preset_filters(
                    cx,
                    p.template.as_ref(),
                    p.version.as_ref(),
                    p.preset.as_ref(),
                    false,
                    expectation.origin,
                );
            }
            Expect::Preset(p) => {
                self.preset_filters(
                    cx,
                    p.template.as_ref(),
                    p.version.as_ref(),
                    p.name.as_ref(),
                    true,
                    expectation.origin,
                );
            }
            Expect::Chat(c) => self.chat(cx, &c.name.value, c.name.origin),
            Expect::Violations => {}
        }
    }
}
