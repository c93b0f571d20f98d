//! The gallery: the user's avatars a page at a time, and the trained ones to generate with,
//! both from the gallery read model.

use aggregates::{AvatarStatus, AvatarType};
use projections::gallery;
use teloxide::dptree::{self, case};
use uuid::Uuid;

use crate::bot::callbacks::Callback;
use crate::bot::ctx::{Ctx, Screen};
use crate::bot::keyboards as kb;
use crate::bot::press::{Answer, Buttons};
use crate::bot::reads::connection;
use crate::bot::texts::AvatarLine;
use crate::bot::BotError;

/// Avatars per gallery page.
pub const GALLERY_PAGE_SIZE: u32 = 5;

/// The gallery's buttons.
pub(in crate::bot) fn buttons() -> Buttons {
    dptree::entry()
        .branch(case![Callback::Gallery(page)].endpoint(
            |ctx: Ctx, screen: Screen, page: u32| async move {
                show_gallery(&ctx, screen, page).await?;
                Ok(Answer::Silent)
            },
        ))
        .branch(
            case![Callback::AllAvatars].endpoint(|ctx: Ctx, screen: Screen| async move {
                show_generation_avatars(&ctx, screen).await?;
                Ok(Answer::Silent)
            }),
        )
}

/// One gallery row with its type and status read once, strictly.
struct Listed {
    id: Uuid,
    name: String,
    avatar_type: AvatarType,
    status: AvatarStatus,
    photos: i64,
    has_model: bool,
}

fn listed(items: Vec<gallery::GalleryItem>) -> Result<Vec<Listed>, BotError> {
    items
        .into_iter()
        .map(|item| {
            Ok(Listed {
                avatar_type: item.parsed_type()?,
                status: item.parsed_status()?,
                id: item.avatar_id,
                name: item.name,
                photos: item.photo_count,
                has_model: item.has_model,
            })
        })
        .collect()
}

/// One page of the user's gallery, from the gallery read model.
pub(in crate::bot) async fn show_gallery(
    ctx: &Ctx,
    screen: Screen,
    page: u32,
) -> Result<(), BotError> {
    let t = ctx.t();
    let mut conn = connection(&ctx.deps.db).await?;
    let offset = i64::from(page) * i64::from(GALLERY_PAGE_SIZE);
    let mut listed_page = gallery::page(
        &mut conn.tx(),
        ctx.user,
        offset,
        i64::from(GALLERY_PAGE_SIZE),
    )
    .await?;
    let mut page = page;
    if listed_page.items.is_empty() && page > 0 {
        // The page emptied (a deletion): show the first one instead.
        page = 0;
        listed_page =
            gallery::page(&mut conn.tx(), ctx.user, 0, i64::from(GALLERY_PAGE_SIZE)).await?;
    }
    drop(conn);
    if listed_page.total == 0 {
        ctx.show(screen, t.gallery_empty(), kb::no_trained_avatars(t))
            .await?;
        return Ok(());
    }
    let (total, has_previous, has_next) = (
        listed_page.total,
        listed_page.has_previous(),
        listed_page.has_next(),
    );
    let items = listed(listed_page.items)?;
    let lines: Vec<AvatarLine> = items
        .iter()
        .map(|item| AvatarLine {
            name: item.name.clone(),
            avatar_type: item.avatar_type,
            status: item.status,
            photos: item.photos,
        })
        .collect();
    let buttons: Vec<(Uuid, String, AvatarType)> = items
        .into_iter()
        .map(|item| (item.id, item.name, item.avatar_type))
        .collect();
    let pages =
        ((total + i64::from(GALLERY_PAGE_SIZE) - 1) / i64::from(GALLERY_PAGE_SIZE)) as usize;
    let text = t.gallery(&lines, page as usize, pages, total);
    let keyboard = kb::gallery(t, &buttons, page, has_previous, has_next);
    ctx.show(screen, text, keyboard).await?;
    Ok(())
}

/// The user's trained avatars to generate with, the last used first.
pub(in crate::bot) async fn show_generation_avatars(
    ctx: &Ctx,
    screen: Screen,
) -> Result<(), BotError> {
    let t = ctx.t();
    let mut conn = connection(&ctx.deps.db).await?;
    let all = gallery::page(&mut conn.tx(), ctx.user, 0, gallery::MAX_PAGE).await?;
    drop(conn);
    let trained: Vec<(Uuid, String)> = listed(all.items)?
        .into_iter()
        .filter(|item| item.has_model && item.status == AvatarStatus::Trained)
        .map(|item| (item.id, item.name))
        .collect();
    if trained.is_empty() {
        ctx.show(screen, t.no_trained_avatars(), kb::no_trained_avatars(t))
            .await?;
        return Ok(());
    }
    let last = ctx
        .deps
        .users
        .get(ctx.user)
        .await?
        .and_then(|u| u.last_avatar_id);
    let keyboard = kb::generation_avatars(t, &trained, last);
    ctx.show(screen, t.choose_avatar_for_generation(), keyboard)
        .await?;
    Ok(())
}
