//! 12 · Team (admins) — who can sign in and with which role: add a person, change a role,
//! disable or enable, set a new password, end someone's sessions, turn off someone's two-step
//! sign-in (a lost device). Every change is in the audit
//! log; a change that would leave no active admin is refused. Each row is a form of its own
//! (posted to this panel); a role changes with its Save, and demoting an admin asks first.

use leptos::prelude::*;

use super::{Acted, Fields, Panel, PanelId, act_form, badge, field_owned, ok_note};
use crate::api::{add_user, end_user_sessions, list_users, require_two_step, reset_user_password, set_user_disabled, set_user_projects, set_user_role, two_step_off, two_step_required};
use crate::view::UserRow;

pub async fn render(flash: Option<AnyView>) -> AnyView {
    let (users, required) = futures::join!(list_users(), two_step_required());
    let required = required.unwrap_or(false);
    let head = users.as_ref().map_or_else(|_| badge("bad", "Unreadable"), |u| badge("ok", format!("{} people", u.len())));
    view! {
        <Panel id=PanelId::Team badge=head class="wide" flash=flash>
            {match users {
                Ok(list) => view! {
                    <div class="table-wrap" tabindex="0" role="region" aria-label="People">
                        <table class="tasks" data-testid="team-list">
                            <thead><tr><th scope="col">"Email"</th><th scope="col">"Name"</th><th scope="col">"Role"</th><th scope="col" title="A producer or viewer limited to some projects sees and touches nothing of the others; empty: every project (admins always)">"Projects"</th><th scope="col">"State"</th><th scope="col">"Changes"</th></tr></thead>
                            <tbody>{list.into_iter().map(user_row).collect_view()}</tbody>
                        </table>
                    </div>
                }.into_any(),
                Err(e) => super::unavailable(&e),
            }}
            <form class="rule-form" method="post" action=act_form(PanelId::Team) data-testid="team-add">
                <input type="hidden" name="do" value="add"/>
                <label>"Email "<input type="email" name="email" required=true maxlength="254" data-testid="team-email"/></label>
                <label>"Name "<input name="name" maxlength="80" data-testid="team-name"/></label>
                <label>"Role "
                    <select name="role" data-testid="team-role">
                        <option value="producer" selected=true>"producer"</option><option value="viewer">"viewer"</option><option value="admin">"admin"</option>
                    </select>
                </label>
                <label>"Password "<input type="password" name="password" required=true minlength="10" maxlength="256" autocomplete="new-password" data-testid="team-password"/></label>
                <button type="submit" data-testid="team-add-submit">"Add person"</button>
            </form>
            <form class="inline small" method="post" action=act_form(PanelId::Team) data-testid="team-two-step-rule">
                <input type="hidden" name="do" value="two-step-rule"/>
                <input type="hidden" name="on" value=if required { "false" } else { "true" }/>
                {if required { "Two-step sign-in: required of everyone with a password. " } else { "Two-step sign-in: each person's choice. " }}
                <button type="submit" class="link" data-testid="team-two-step-rule-submit">{if required { "Stop requiring it" } else { "Require it of everyone" }}</button>
            </form>
            <details class="help"><summary title="What this is and how it works">"?"</summary><p class="fine">"Viewers read everything of the team; producers also compose, submit, retry and pin models; admins also manage people, relay keys and cost rules. A producer or viewer given projects sees and touches only those (their tasks, Library, receipts, rules); with none, every project. A change holds from the person's next request."</p></details>
        </Panel>
    }
    .into_any()
}

fn user_row(u: UserRow) -> impl IntoView + use<> {
    let form = format!("user-{}", u.email);
    view! {
        <tr data-user=u.email.clone()>
            <td title=format!("added {}", u.created)>{u.email.clone()}</td>
            <td>{u.name.clone()}</td>
            <td>
                <select name="role" form=form.clone() aria-label=format!("Role of {}", u.email) data-testid="user-role-select">
                    {["viewer", "producer", "admin"].map(|r| view! { <option value=r selected=u.role == r>{r}</option> }).collect_view()}
                </select>
                " "<button type="submit" class="link" form=form.clone() name="do" value="role" data-testid="user-role-save">"Save role"</button>
            </td>
            <td>
                <input name="projects" form=form.clone() value=u.projects.join(", ") placeholder="all" maxlength="2000" class="projects-input" aria-label=format!("Projects of {} (comma-separated; empty: all)", u.email) data-testid="user-projects"/>
                " "<button type="submit" class="link" form=form.clone() name="do" value="projects" data-testid="user-projects-save">"Save"</button>
            </td>
            <td>{if u.disabled { badge("bad", "disabled") } else { badge("ok", "active") }}{u.two_step.then(|| view! { " "{badge("ok", "two-step")} })}</td>
            <td>
                <form id=form method="post" action=act_form(PanelId::Team) class="inline">
                    <input type="hidden" name="email" value=u.email.clone()/>
                    <button type="submit" class="link" name="do" value=if u.disabled { "enable" } else { "disable" }>{if u.disabled { "Enable" } else { "Disable" }}</button>
                    " "
                    <button type="submit" class="link" name="do" value="end">"End sessions"</button>
                    " "
                    <input type="password" name="password" placeholder="new password" minlength="10" maxlength="256" autocomplete="new-password" class="small-input" aria-label=format!("New password for {}", u.email)/>
                    <button type="submit" class="link" name="do" value="password">"Set password"</button>
                    {u.two_step.then(|| view! { " "<button type="submit" class="link" name="do" value="two-step-off" data-testid="user-two-step-off">"Turn two-step off"</button> })}
                </form>
            </td>
        </tr>
    }
}

/// `do` = add, role (its Save; demoting an admin asks first), enable, disable, end, password,
/// two-step-off (for someone who lost their device) or cancel.
pub async fn act(form: Fields) -> Acted {
    let get = |n: &str| field_owned(&form, n).unwrap_or_default();
    let email = get("email");
    let r = match get("do").as_str() {
        "role" if get("confirm") != "yes" && get("role") != "admin" && is_admin(&email).await => {
            let question = format!("Demote {email} from admin to {}? They can no longer manage people, relay keys or cost rules (from their next request).", get("role"));
            return Acted::new(super::confirm(PanelId::Team, question, vec![("email", email.clone()), ("role", get("role"))], super::Confirm::Press, "role", format!("Demote to {}", get("role"))));
        }
        "role" => set_user_role(email, get("role")).await.map(|u| format!("{} is now {}.", u.email, u.role)),
        "projects" => set_user_projects(email, get("projects")).await.map(|u| match u.projects.is_empty() {
            true => format!("{} reaches every project.", u.email),
            false => format!("{} now sees only {}.", u.email, u.projects.join(", ")),
        }),
        "cancel" => return super::cancelled(),
        "add" => add_user(email, get("name"), get("role"), get("password")).await.map(|u| format!("Added {} as {}.", u.email, u.role)),
        "disable" | "enable" => set_user_disabled(email, get("do") == "disable")
            .await
            .map(|u| format!("{} is {}.", u.email, if u.disabled { "disabled; their sessions have ended" } else { "enabled" })),
        "end" => end_user_sessions(email.clone()).await.map(|_| format!("Every session of {email} has ended.")),
        "password" => reset_user_password(email, get("password")).await.map(|u| format!("New password set for {}; their sessions have ended.", u.email)),
        "two-step-rule" => {
            let on = get("on") == "true";
            require_two_step(on).await.map(|()| if on { "Two-step sign-in is now required: whoever has none sets it up at their next sign-in.".to_string() } else { "Two-step sign-in is each person's choice again.".to_string() })
        }
        "two-step-off" => two_step_off(email.clone(), String::new()).await.map(|()| format!("Two-step sign-in is off for {email}: their password alone opens the account until they set it up again.")),
        other => Err(ServerFnError::new(format!("unknown change {:?}", other.chars().take(32).collect::<String>()))),
    };
    Acted::of(r, |msg| ok_note("team-result", msg), "team-error").also(&[PanelId::Audit])
}

/// Whether `email` is an admin now (a demotion asks first).
async fn is_admin(email: &str) -> bool {
    list_users().await.is_ok_and(|users| users.iter().any(|u| u.email == email && u.role == "admin"))
}
