//! 12 · Team (admins) — who can sign in and with which role: add a person, change a role,
//! disable or enable, set a new password, end someone's sessions. Every change is in the audit
//! log; a change that would leave no active admin is refused.

use leptos::prelude::*;

use super::{Panel, badge, said};
use crate::api::{add_user, end_user_sessions, list_users, reset_user_password, set_user_disabled, set_user_role};
use crate::view::UserRow;

/// One change to a user, as the panel's buttons make it.
#[derive(Clone)]
enum Change {
    Add { email: String, name: String, role: String, password: String },
    Role(String, String),
    Disabled(String, bool),
    Password(String, String),
    EndSessions(String),
}

async fn apply(c: Change) -> Result<String, ServerFnError> {
    Ok(match c {
        Change::Add { email, name, role, password } => {
            let u = add_user(email, name, role, password).await?;
            format!("Added {} as {}.", u.email, u.role)
        }
        Change::Role(email, role) => {
            let u = set_user_role(email, role).await?;
            format!("{} is now {}.", u.email, u.role)
        }
        Change::Disabled(email, disabled) => {
            let u = set_user_disabled(email, disabled).await?;
            format!("{} is {}.", u.email, if u.disabled { "disabled; their sessions have ended" } else { "enabled" })
        }
        Change::Password(email, password) => {
            let u = reset_user_password(email, password).await?;
            format!("New password set for {}; their sessions have ended.", u.email)
        }
        Change::EndSessions(email) => {
            end_user_sessions(email.clone()).await?;
            format!("Every session of {email} has ended.")
        }
    })
}

#[component]
pub fn TeamPanel() -> impl IntoView {
    let change = Action::new(|c: &Change| apply(c.clone()));
    // Loaded in the browser: this panel is built there, for admins only (see `when_role`).
    let users = LocalResource::new(move || {
        change.version().track();
        list_users()
    });
    let (email, name, role, password) = (RwSignal::new(String::new()), RwSignal::new(String::new()), RwSignal::new("producer".to_string()), RwSignal::new(String::new()));
    let on_add = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        change.dispatch(Change::Add { email: email.get_untracked(), name: name.get_untracked(), role: role.get_untracked(), password: password.get_untracked() });
        password.set(String::new());
    };
    let head = move || match users.get() {
        Some(Ok(u)) => badge("ok", format!("{} people", u.len())).into_any(),
        Some(Err(_)) => badge("bad", "Unreadable").into_any(),
        None => badge("wait", "Loading").into_any(),
    };
    view! {
        <Panel number="12" kicker="Team" title="People and Roles" badge=view! { <Suspense fallback=|| ()>{head}</Suspense> } class="wide">
            <Suspense fallback=|| view! { <p class="muted">"Loading…"</p> }>
                {move || users.get().map(|r| match r {
                    Ok(list) => view! {
                        <table class="tasks" data-testid="team-list">
                            <thead><tr><th>"Email"</th><th>"Name"</th><th>"Role"</th><th>"State"</th><th>"Since"</th><th></th></tr></thead>
                            <tbody>{list.into_iter().map(|u| user_row(u, change)).collect_view()}</tbody>
                        </table>
                    }.into_any(),
                    Err(e) => view! { <p class="error">{said(&e)}</p> }.into_any(),
                })}
            </Suspense>
            <form class="rule-form" on:submit=on_add data-testid="team-add">
                <label>"Email "<input type="email" required=true maxlength="254" data-testid="team-email" prop:value=email on:input=move |ev| email.set(event_target_value(&ev))/></label>
                <label>"Name "<input maxlength="80" data-testid="team-name" prop:value=name on:input=move |ev| name.set(event_target_value(&ev))/></label>
                <label>"Role "
                    <select data-testid="team-role" on:change=move |ev| role.set(event_target_value(&ev))>
                        <option value="producer" selected=true>"producer"</option><option value="viewer">"viewer"</option><option value="admin">"admin"</option>
                    </select>
                </label>
                <label>"Password "<input type="password" required=true minlength="10" maxlength="256" autocomplete="new-password" data-testid="team-password" prop:value=password on:input=move |ev| password.set(event_target_value(&ev))/></label>
                <button type="submit" data-testid="team-add-submit" disabled=move || change.pending().get()>"Add person"</button>
            </form>
            {move || change.value().get().map(|r| match r {
                Ok(msg) => view! { <p class="ok" data-testid="team-result">{msg}</p> }.into_any(),
                Err(e) => view! { <p class="error" data-testid="team-error">{said(&e)}</p> }.into_any(),
            })}
            <p class="fine">"Viewers read everything of the team; producers also compose, submit, retry and pin models; admins also manage people, relay keys and cost rules. A role change holds from the person's next request."</p>
        </Panel>
    }
}

fn user_row(u: UserRow, change: Action<Change, Result<String, ServerFnError>>) -> impl IntoView {
    let email = u.email.clone();
    let (e1, e2, e3, e4) = (email.clone(), email.clone(), email.clone(), email.clone());
    let disabled = u.disabled;
    let new_password = RwSignal::new(String::new());
    view! {
        <tr data-user=u.email.clone()>
            <td>{u.email.clone()}</td>
            <td>{u.name.clone()}</td>
            <td>
                <select aria-label="role" data-testid="user-role-select" on:change=move |ev| { change.dispatch(Change::Role(e1.clone(), event_target_value(&ev))); }>
                    {["viewer", "producer", "admin"].map(|r| view! { <option value=r selected=u.role == r>{r}</option> }).collect_view()}
                </select>
            </td>
            <td>{if disabled { badge("bad", "disabled").into_any() } else { badge("ok", "active").into_any() }}</td>
            <td class="muted small">{u.created.clone()}</td>
            <td>
                <button type="button" class="link" on:click=move |_| { change.dispatch(Change::Disabled(e2.clone(), !disabled)); }>{if disabled { "Enable" } else { "Disable" }}</button>
                " "
                <button type="button" class="link" on:click=move |_| { change.dispatch(Change::EndSessions(e3.clone())); }>"End sessions"</button>
                " "
                <input type="password" placeholder="new password" minlength="10" maxlength="256" autocomplete="new-password" class="small-input"
                    prop:value=new_password on:input=move |ev| new_password.set(event_target_value(&ev))/>
                <button type="button" class="link" on:click=move |_| { change.dispatch(Change::Password(e4.clone(), new_password.get_untracked())); new_password.set(String::new()); }>"Set password"</button>
            </td>
        </tr>
    }
}
