//! The route table. The router is generated from it, so the table is the router: the contract
//! test compares it with `openapi.yaml`, and nothing can be routed that the document does not
//! describe.

mod account;
mod communities;
mod contacts;
mod devices;
mod group_settings;
mod groups;
mod membership;
mod ops;
mod sessions;
mod tenants;
mod users;
mod webhooks;

use axum::Router;

use super::state::AppState;

macro_rules! api_routes {
    ($( $path:literal => { $( $method:ident : $handler:path ),+ $(,)? } ),* $(,)?) => {
        /// Every (method, path) the API serves, with paths in OpenAPI template syntax.
        pub const ROUTES: &[(&str, &str)] = &[ $( $( (stringify!($method), $path), )+ )* ];

        pub(super) fn api_router() -> Router<AppState> {
            Router::new()
                $( .route($path, axum::routing::MethodRouter::new() $( .$method($handler) )+ ) )*
        }
    };
}

api_routes! {
    // Platform administration (master token).
    "/register" => { post: tenants::register },
    "/tenants" => { get: tenants::list },
    "/global/tenants/{id}" => {
        get: tenants::get,
        patch: tenants::update,
        delete: tenants::delete,
    },
    // Users of a tenant.
    "/users" => { get: users::list, post: users::create },
    "/users/{id}" => { get: users::get, put: users::update, delete: users::delete },
    "/users/{id}/promote" => { post: users::promote },
    "/users/{id}/token" => { post: users::rotate_token },
    // Devices.
    "/devices" => { get: devices::list, post: devices::create },
    "/user/devices" => { get: devices::list_own },
    "/devices/{id}" => { get: devices::get, delete: sessions::delete_device },
    // Device sessions.
    "/qr" => { get: sessions::qr },
    "/qr/status" => { get: sessions::qr_status },
    "/paircode" => { post: sessions::paircode },
    "/status" => { get: sessions::status },
    "/connect" => { post: sessions::connect },
    "/disconnect" => { post: sessions::disconnect },
    "/logout" => { post: sessions::logout },
    // Contacts.
    "/contacts" => { get: contacts::list },
    "/contacts/blocklist" => { get: contacts::blocklist },
    "/contacts/block" => { post: contacts::block },
    "/contacts/unblock" => { post: contacts::unblock },
    "/contacts/resolve" => { post: contacts::resolve },
    "/contact/check" => { post: contacts::check },
    "/contacts/profile" => { get: contacts::profile },
    // Groups.
    "/groups" => { get: groups::list, post: groups::create },
    "/groups/{jid}" => { get: groups::get, patch: groups::update },
    "/groups/{jid}/participants" => {
        post: groups::add_participants,
        delete: groups::remove_participants,
    },
    "/groups/{jid}/leave" => { delete: groups::leave },
    // Groups: invite links, joining, join requests, disappearing messages.
    "/groups/{jid}/invite" => { get: membership::invite },
    "/groups/{jid}/invite/reset" => { post: membership::reset_invite },
    "/groups/join" => { post: membership::join },
    "/groups/invite-info" => { get: membership::invite_info },
    "/groups/{jid}/requests" => {
        get: membership::requests,
        post: membership::answer_requests,
    },
    "/groups/{jid}/ephemeral" => { put: group_settings::set_ephemeral },
    // Communities.
    "/communities" => { get: communities::list_communities, post: communities::create_community },
    "/communities/{jid}" => {
        get: communities::get_community,
        patch: group_settings::update_community,
        delete: communities::deactivate_community,
    },
    "/communities/{jid}/participants" => {
        get: communities::community_participants,
        post: communities::add_community_participants,
        delete: communities::remove_community_participants,
    },
    "/communities/{jid}/groups" => {
        get: communities::community_groups,
        post: communities::link_groups,
        delete: communities::unlink_groups,
    },
    "/communities/{jid}/leave" => { delete: communities::leave_community },
    // Communities: settings and join requests.
    "/communities/{jid}/requests" => {
        get: membership::requests,
        post: membership::answer_requests,
    },
    // The account's pages: pictures, privacy, app-state sync.
    "/contacts/profile-picture" => { get: account::profile_picture },
    "/groups/{jid}/picture" => {
        post: account::set_group_picture,
        delete: account::remove_group_picture,
    },
    "/profile/picture" => { post: account::set_own_picture },
    "/privacy" => { get: account::privacy, patch: account::update_privacy },
    "/appstate/sync" => { post: account::sync_app_state },
    // Events and webhooks.
    "/webhook" => { post: webhooks::configure, get: webhooks::get, delete: webhooks::delete },
    "/webhook/events" => { get: webhooks::catalogue },
    "/webhook/test" => { post: webhooks::test },
    "/webhook/deliveries" => { get: webhooks::deliveries },
    "/user/webhook" => { post: webhooks::set_pending },
    "/events" => { get: webhooks::events },
    "/events/{id}/redeliver" => { post: webhooks::redeliver },
    // Operations.
    "/healthz" => { get: ops::healthz },
    "/readyz" => { get: ops::readyz },
    "/metrics" => { get: ops::metrics },
    "/openapi.yaml" => { get: ops::openapi },
}
