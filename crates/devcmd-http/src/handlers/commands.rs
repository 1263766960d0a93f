//! Create, query and cancel device commands.

use std::sync::Arc;

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use devcmd_core::Caller;

use crate::error::ApiError;
use crate::handlers::json;
use crate::view::{CommandView, PageView};
use crate::wire::{parse_app_param, parse_cancel_command, parse_command_id, parse_command_query, parse_create_command};
use crate::{Api, Authed};

/// `POST /iocm/app/cmd/v1.4.0/deviceCommands?appId=`: 201 with the
/// `DeviceCommandResp`, once the command is synced to disk.
pub(crate) async fn create(
    State(api): State<Arc<Api>>,
    Authed(app): Authed,
    RawQuery(query): RawQuery,
    req: Request,
) -> Response {
    let r = async {
        let on_behalf_of = parse_app_param(query.as_deref())?;
        let req = parse_create_command(&api.body(req).await?)?;
        let receipt = api
            .writable_core()?
            .create_command(&Caller { app, on_behalf_of }, req)?;
        receipt.commit.await?;
        json(StatusCode::CREATED, &CommandView::of(&receipt.value))
    };
    api.respond(r.await)
}

/// `GET /iocm/app/cmd/v1.4.0/deviceCommands?pageNo&pageSize&deviceId&startTime&endTime&appId`.
/// Answers only once what it shows is durable.
pub(crate) async fn list(State(api): State<Arc<Api>>, Authed(app): Authed, RawQuery(query): RawQuery) -> Response {
    let r = async {
        let (q, on_behalf_of) = parse_command_query(query.as_deref())?;
        let core = api.core()?;
        let caller = Caller { app, on_behalf_of };
        let query = q.clone();
        let page = api.on_core(core, move |c| c.list_commands(&caller, &query)).await?;
        api.visible_durable(core, q.device_id.as_ref()).await?;
        let data = page.items.iter().map(CommandView::of).collect();
        json(StatusCode::OK, &PageView::of(&page, data))
    };
    api.respond(r.await)
}

/// `PUT /iocm/app/cmd/v1.4.0/deviceCommands/{deviceCommandId}?appId=` with
/// `{"status":"CANCELED"}`: 200 with the cancelled command (PENDING only).
pub(crate) async fn cancel(
    State(api): State<Arc<Api>>,
    Authed(app): Authed,
    path: Result<Path<String>, PathRejection>,
    RawQuery(query): RawQuery,
    req: Request,
) -> Response {
    let r = async {
        let on_behalf_of = parse_app_param(query.as_deref())?;
        parse_cancel_command(&api.body(req).await?)?;
        let Path(command_id) = path.map_err(|_| ApiError::invalid("deviceCommandId", "not valid UTF-8"))?;
        let id = parse_command_id(&command_id)?;
        let caller = Caller { app, on_behalf_of };
        let receipt = api
            .on_core(api.writable_core()?, move |c| c.cancel_command(&caller, id))
            .await?;
        receipt.commit.await?;
        json(StatusCode::OK, &CommandView::of(&receipt.value))
    };
    api.respond(r.await)
}
