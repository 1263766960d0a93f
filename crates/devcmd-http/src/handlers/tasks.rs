//! Create and query device command cancel tasks.

use std::sync::Arc;

use axum::extract::{RawQuery, Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use devcmd_core::Caller;

use crate::handlers::json;
use crate::view::{PageView, TaskView};
use crate::wire::{parse_app_param, parse_create_cancel_task, parse_task_query};
use crate::{Api, Authed};

/// `POST /iocm/app/cmd/v1.4.0/deviceCommandCancelTasks?appId=` with
/// `{"deviceId"}`: 201, `WAITTING`, with the commands it will cancel.
pub(crate) async fn create(
    State(api): State<Arc<Api>>,
    Authed(app): Authed,
    RawQuery(query): RawQuery,
    req: Request,
) -> Response {
    let r = async {
        let on_behalf_of = parse_app_param(query.as_deref())?;
        let device = parse_create_cancel_task(&api.body(req).await?)?;
        let receipt = api
            .writable_core()?
            .create_cancel_task(&Caller { app, on_behalf_of }, &device)?;
        receipt.commit.await?;
        json(StatusCode::CREATED, &TaskView::of(&receipt.value))
    };
    api.respond(r.await)
}

/// `GET /iocm/app/cmd/v1.4.0/deviceCommandCancelTasks?taskId&deviceId&status&startTime&endTime&pageNo&pageSize&appId`.
/// Answers only once what it shows is durable.
pub(crate) async fn list(State(api): State<Arc<Api>>, Authed(app): Authed, RawQuery(query): RawQuery) -> Response {
    let r = async {
        let (q, on_behalf_of) = parse_task_query(query.as_deref())?;
        let core = api.core()?;
        let caller = Caller { app, on_behalf_of };
        let query = q.clone();
        let page = api.on_core(core, move |c| c.list_cancel_tasks(&caller, &query)).await?;
        api.visible_durable(core, q.device_id.as_ref()).await?;
        let data = page.items.iter().map(TaskView::of).collect();
        json(StatusCode::OK, &PageView::of(&page, data))
    };
    api.respond(r.await)
}
