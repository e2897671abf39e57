/* gs-plugin-flatipfs.c: the flatipfs plugin for GNOME Software 43 (plugin
 * ABI 19): apps installed from IPFS by flatipfsd, the apps its trusted
 * remotes offer, their updates; install, update, remove and launch through
 * the daemon's D-Bus API (org.flatipfs.Manager1 on the system bus).
 *
 * Everything the plugin shows comes from the daemon, which fetched,
 * bounded and validated it (catalogs re-written, icons re-encoded): the
 * plugin only translates. Blocking D-Bus calls run in worker threads
 * (GNOME Software's for the exported action symbols, GTask threads for the
 * async vfuncs). Jobs are followed through their Job object (State,
 * Progress, Result, ErrorName, ErrorMessage), polled; cancelling in GNOME
 * Software calls Job.Cancel. Authorization may be interactive only when
 * GNOME Software says the action is. With no daemon on the bus, setup fails
 * and GNOME Software disables the plugin (logged at debug level only).
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#define I_KNOW_THE_GNOME_SOFTWARE_API_IS_SUBJECT_TO_CHANGE
#include <gnome-software.h>
#include <glib/gstdio.h>

#define BUS_NAME "org.flatipfs.Manager1"
#define MANAGER_PATH "/org/flatipfs/Manager1"
#define MANAGER_IFACE "org.flatipfs.Manager1"
#define APP_IFACE "org.flatipfs.Manager1.App"
#define JOB_IFACE "org.flatipfs.Manager1.Job"
#define ERROR_PREFIX "org.flatipfs.Manager1.Error."
/* Quick calls (listing, reading properties). */
#define CALL_TIMEOUT_MS 30000
/* How often a running job is looked at. */
#define POLL_US (150 * 1000)
/* GsApp metadata keys of this plugin. */
#define KEY_REMOTE "flatipfs::remote"

struct _GsPluginFlatipfs {
	GsPlugin parent;
	GDBusConnection *bus;
	gint64 last_refresh;	/* monotonic µs of the last Refresh, 0: never */
	GMutex lock;
};

G_DECLARE_FINAL_TYPE (GsPluginFlatipfs, gs_plugin_flatipfs, GS, PLUGIN_FLATIPFS, GsPlugin)
G_DEFINE_TYPE (GsPluginFlatipfs, gs_plugin_flatipfs, GS_TYPE_PLUGIN)

/* ------------------------------------------------------------------------ */
/* Errors: the daemon's D-Bus errors as GNOME Software errors. */

static GsPluginError
error_code_for (const gchar *name)
{
	const gchar *kind;

	if (name == NULL)
		return GS_PLUGIN_ERROR_FAILED;
	if (g_str_equal (name, "org.freedesktop.DBus.Error.AccessDenied"))
		return GS_PLUGIN_ERROR_NO_SECURITY;
	if (g_str_equal (name, "org.freedesktop.DBus.Error.InteractiveAuthorizationRequired"))
		return GS_PLUGIN_ERROR_AUTH_REQUIRED;
	if (g_str_equal (name, "org.freedesktop.DBus.Error.ServiceUnknown") ||
	    g_str_equal (name, "org.freedesktop.DBus.Error.NameHasNoOwner"))
		return GS_PLUGIN_ERROR_NOT_SUPPORTED;
	if (g_str_equal (name, "org.freedesktop.DBus.Error.NoReply") ||
	    g_str_equal (name, "org.freedesktop.DBus.Error.Timeout"))
		return GS_PLUGIN_ERROR_TIMED_OUT;
	if (!g_str_has_prefix (name, ERROR_PREFIX))
		return GS_PLUGIN_ERROR_FAILED;
	kind = name + strlen (ERROR_PREFIX);
	if (g_str_equal (kind, "Cancelled"))
		return GS_PLUGIN_ERROR_CANCELLED;
	if (g_str_equal (kind, "NoSpace"))
		return GS_PLUGIN_ERROR_NO_SPACE;
	if (g_str_equal (kind, "FetchFailed") || g_str_equal (kind, "ResolveFailed"))
		return GS_PLUGIN_ERROR_DOWNLOAD_FAILED;
	if (g_str_equal (kind, "VerificationFailed") || g_str_equal (kind, "Untrusted"))
		return GS_PLUGIN_ERROR_INVALID_FORMAT;
	if (g_str_equal (kind, "MountFailed"))
		return GS_PLUGIN_ERROR_WRITE_FAILED;
	if (g_str_equal (kind, "NotSupported"))
		return GS_PLUGIN_ERROR_NOT_SUPPORTED;
	return GS_PLUGIN_ERROR_FAILED;
}

/* A readable message: what the daemon said, with what it was about. */
static void
set_daemon_error (GError **error, const gchar *what, const gchar *name, const gchar *message)
{
	GsPluginError code = error_code_for (name);
	const gchar *text = (message != NULL && *message != '\0') ? message : name;

	switch (code) {
	case GS_PLUGIN_ERROR_NO_SECURITY:
		g_set_error (error, GS_PLUGIN_ERROR, code,
			     "Not allowed to %s: %s", what, text);
		break;
	case GS_PLUGIN_ERROR_AUTH_REQUIRED:
		g_set_error (error, GS_PLUGIN_ERROR, code,
			     "Authentication is required to %s", what);
		break;
	case GS_PLUGIN_ERROR_CANCELLED:
		g_set_error (error, GS_PLUGIN_ERROR, code, "Cancelled");
		break;
	default:
		g_set_error (error, GS_PLUGIN_ERROR, code,
			     "Could not %s: %s", what, text);
		break;
	}
}

/* Turns a failed call's GError into a GNOME Software error. */
static void
convert_call_error (GError **error, const gchar *what)
{
	g_autofree gchar *name = NULL;
	g_autoptr(GError) original = NULL;

	if (error == NULL || *error == NULL || (*error)->domain == GS_PLUGIN_ERROR)
		return;
	if (g_error_matches (*error, G_IO_ERROR, G_IO_ERROR_CANCELLED)) {
		gs_utils_error_convert_gio (error);
		return;
	}
	name = g_dbus_error_get_remote_error (*error);
	g_dbus_error_strip_remote_error (*error);
	original = g_steal_pointer (error);
	set_daemon_error (error, what, name, original->message);
}

/* ------------------------------------------------------------------------ */
/* D-Bus calls (blocking: worker threads only). */

static GVariant *
call (GsPluginFlatipfs *self,
      const gchar *path,
      const gchar *iface,
      const gchar *method,
      GVariant *parameters,
      const gchar *reply_type,
      gboolean interactive,
      gint timeout_ms,
      GCancellable *cancellable,
      GError **error)
{
	return g_dbus_connection_call_sync (self->bus, BUS_NAME, path, iface, method,
					    parameters,
					    reply_type != NULL ? G_VARIANT_TYPE (reply_type) : NULL,
					    interactive ? G_DBUS_CALL_FLAGS_ALLOW_INTERACTIVE_AUTHORIZATION
							: G_DBUS_CALL_FLAGS_NONE,
					    timeout_ms, cancellable, error);
}

/* Every property of `iface` on `path` (a{sv}), or NULL. */
static GVariant *
get_all (GsPluginFlatipfs *self, const gchar *path, const gchar *iface,
	 GCancellable *cancellable, GError **error)
{
	g_autoptr(GVariant) reply = NULL;

	reply = call (self, path, "org.freedesktop.DBus.Properties", "GetAll",
		      g_variant_new ("(s)", iface), "(a{sv})", FALSE,
		      CALL_TIMEOUT_MS, cancellable, error);
	if (reply == NULL)
		return NULL;
	return g_variant_get_child_value (reply, 0);
}

static const gchar *
dict_str (GVariant *dict, const gchar *key)
{
	const gchar *value = NULL;

	if (dict == NULL || !g_variant_lookup (dict, key, "&s", &value))
		return "";
	return value;
}

static guint64
dict_u64 (GVariant *dict, const gchar *key)
{
	guint64 value = 0;

	if (dict == NULL || !g_variant_lookup (dict, key, "t", &value))
		return 0;
	return value;
}

static gboolean
dict_bool (GVariant *dict, const gchar *key)
{
	gboolean value = FALSE;

	if (dict == NULL || !g_variant_lookup (dict, key, "b", &value))
		return FALSE;
	return value;
}

/* ------------------------------------------------------------------------ */
/* Jobs */

/* Follows job `job_path` until it finishes: progress onto `app`, a cancel
 * of `cancellable` sent as Job.Cancel. TRUE on success. */
static gboolean
wait_job (GsPluginFlatipfs *self,
	  GsApp *app,
	  const gchar *job_path,
	  const gchar *what,
	  GCancellable *cancellable,
	  GError **error)
{
	gboolean cancel_sent = FALSE;
	guint misses = 0;

	for (;;) {
		g_autoptr(GVariant) props = NULL;
		g_autoptr(GError) local_error = NULL;
		const gchar *state, *result;
		gdouble progress = -1;

		/* Not cancellable: a cancelled job is still followed to its end. */
		props = get_all (self, job_path, JOB_IFACE, NULL, &local_error);
		if (props == NULL) {
			/* Gone (after its grace period) or the daemon restarted. */
			if (++misses > 3) {
				g_set_error (error, GS_PLUGIN_ERROR, GS_PLUGIN_ERROR_FAILED,
					     "Could not %s: the daemon's job %s went away: %s",
					     what, job_path, local_error->message);
				return FALSE;
			}
			g_usleep (POLL_US);
			continue;
		}
		misses = 0;
		state = dict_str (props, "State");
		result = dict_str (props, "Result");
		if (g_variant_lookup (props, "Progress", "d", &progress) &&
		    app != NULL && progress >= 0 && progress <= 1)
			gs_app_set_progress (app, (guint) (progress * 100));
		if (g_str_equal (state, "finished")) {
			if (g_str_equal (result, "success"))
				return TRUE;
			if (g_str_equal (result, "cancelled")) {
				g_set_error (error, GS_PLUGIN_ERROR, GS_PLUGIN_ERROR_CANCELLED,
					     "Cancelled");
				return FALSE;
			}
			set_daemon_error (error, what, dict_str (props, "ErrorName"),
					  dict_str (props, "ErrorMessage"));
			return FALSE;
		}
		if (!cancel_sent && cancellable != NULL &&
		    g_cancellable_is_cancelled (cancellable)) {
			g_autoptr(GVariant) reply = NULL;
			g_autoptr(GError) cancel_error = NULL;
			reply = call (self, job_path, JOB_IFACE, "Cancel", NULL, NULL,
				      FALSE, CALL_TIMEOUT_MS, NULL, &cancel_error);
			if (reply == NULL)
				g_debug ("flatipfs: cancelling %s: %s", job_path, cancel_error->message);
			cancel_sent = TRUE;
		}
		g_usleep (POLL_US);
	}
}

/* Calls `method` returning a job (the job path is the last `o` of the
 * reply) and follows the job. */
static gboolean
run_job (GsPluginFlatipfs *self,
	 GsApp *app,
	 const gchar *path,
	 const gchar *iface,
	 const gchar *method,
	 GVariant *parameters,
	 const gchar *reply_type,
	 gboolean interactive,
	 const gchar *what,
	 GCancellable *cancellable,
	 GError **error)
{
	g_autoptr(GVariant) reply = NULL;
	g_autoptr(GVariant) job = NULL;

	reply = call (self, path, iface, method, parameters, reply_type, interactive,
		      G_MAXINT, cancellable, error);
	if (reply == NULL) {
		convert_call_error (error, what);
		return FALSE;
	}
	job = g_variant_get_child_value (reply, g_variant_n_children (reply) - 1);
	return wait_job (self, app, g_variant_get_string (job, NULL), what, cancellable, error);
}

/* ------------------------------------------------------------------------ */
/* Apps */

static void
set_state (GsApp *app, GsAppState state)
{
	if (gs_app_get_state (app) == state)
		return;
	/* Not every transition is allowed directly; the daemon's word wins. */
	gs_app_set_state (app, GS_APP_STATE_UNKNOWN);
	gs_app_set_state (app, state);
}

/* The one GsApp of `id`. */
static GsApp *
app_for_id (GsPluginFlatipfs *self, const gchar *id, gboolean runtime)
{
	GsPlugin *plugin = GS_PLUGIN (self);
	g_autoptr(GMutexLocker) locker = g_mutex_locker_new (&self->lock);
	GsApp *app = gs_plugin_cache_lookup (plugin, id);

	if (app != NULL)
		return app;
	app = gs_app_new (id);
	gs_app_set_kind (app, runtime ? AS_COMPONENT_KIND_RUNTIME : AS_COMPONENT_KIND_DESKTOP_APP);
	gs_app_set_scope (app, AS_COMPONENT_SCOPE_SYSTEM);
	gs_app_set_management_plugin (app, plugin);
	gs_app_set_metadata (app, "GnomeSoftware::Creator", gs_plugin_get_name (plugin));
	gs_app_set_metadata (app, "GnomeSoftware::PackagingFormat", "flatipfs");
	gs_app_set_allow_cancel (app, TRUE);
	gs_app_add_quirk (app, GS_APP_QUIRK_PROVENANCE);
	gs_plugin_cache_add (plugin, id, app);
	return app;
}

/* Makes sure `app` shows the icon the daemon has for it. */
static void
ensure_icon (GsPluginFlatipfs *self, GsApp *app, const gchar *remote, GVariant *sizes)
{
	g_autofree gchar *dir = NULL;
	g_autofree gchar *file = NULL;
	g_autofree gchar *name = NULL;
	guint best = 0;

	if (gs_app_get_icons (app) != NULL && gs_app_get_icons (app)->len > 0)
		return;
	if (sizes != NULL) {
		GVariantIter iter;
		guint32 size;
		g_variant_iter_init (&iter, sizes);
		while (g_variant_iter_next (&iter, "u", &size))
			best = MAX (best, size);
	}
	if (best > 0 && remote != NULL && *remote != '\0') {
		g_autoptr(GVariant) reply = NULL;
		g_autoptr(GVariant) bytes = NULL;
		g_autoptr(GError) local_error = NULL;

		reply = call (self, MANAGER_PATH, MANAGER_IFACE, "GetIcon",
			      g_variant_new ("(ssu)", remote, gs_app_get_id (app), best),
			      "(ay)", FALSE, CALL_TIMEOUT_MS, NULL, &local_error);
		if (reply != NULL) {
			gsize len = 0;
			gconstpointer data;
			bytes = g_variant_get_child_value (reply, 0);
			data = g_variant_get_fixed_array (bytes, &len, 1);
			/* Names are the daemon's validated ids and remote names. */
			dir = g_build_filename (g_get_user_cache_dir (), "gnome-software",
						"flatipfs", "icons", NULL);
			name = g_strdup_printf ("%s-%s-%u.png", remote, gs_app_get_id (app), best);
			file = g_build_filename (dir, name, NULL);
			if (g_mkdir_with_parents (dir, 0700) == 0 &&
			    g_file_set_contents (file, data, len, &local_error)) {
				g_autoptr(GFile) gfile = g_file_new_for_path (file);
				g_autoptr(GIcon) icon = g_file_icon_new (gfile);
				gs_icon_set_width (icon, best);
				gs_icon_set_height (icon, best);
				gs_app_add_icon (app, icon);
				return;
			}
		}
		if (local_error != NULL)
			g_debug ("flatipfs: icon of %s: %s", gs_app_get_id (app), local_error->message);
	}
	/* No icon offered: a generic one. */
	{
		g_autoptr(GIcon) icon = g_themed_icon_new (
			gs_app_get_kind (app) == AS_COMPONENT_KIND_RUNTIME ?
			"system-component-runtime" : "application-x-executable");
		gs_app_add_icon (app, icon);
	}
}

/* Applies one `ListAvailable`/`SearchAvailable` entry to its GsApp. */
static GsApp *
app_from_offer (GsPluginFlatipfs *self, GVariant *offer)
{
	const gchar *id = dict_str (offer, "Id");
	const gchar *remote = dict_str (offer, "Remote");
	const gchar *description = dict_str (offer, "Description");
	const gchar *license = dict_str (offer, "License");
	guint64 size = dict_u64 (offer, "DownloadSize");
	g_autoptr(GVariant) sizes = NULL;
	g_autofree gchar *origin_ui = NULL;
	GsApp *app;

	if (*id == '\0')
		return NULL;
	app = app_for_id (self, id, FALSE);
	gs_app_set_name (app, GS_APP_QUALITY_NORMAL, dict_str (offer, "Name"));
	gs_app_set_summary (app, GS_APP_QUALITY_NORMAL, dict_str (offer, "Summary"));
	if (*description != '\0')
		gs_app_set_description (app, GS_APP_QUALITY_NORMAL, description);
	if (*license != '\0')
		gs_app_set_license (app, GS_APP_QUALITY_NORMAL, license);
	gs_app_set_origin (app, remote);
	origin_ui = g_strdup_printf ("%s (IPFS)", remote);
	gs_app_set_origin_ui (app, origin_ui);
	gs_app_set_metadata (app, KEY_REMOTE, NULL);
	gs_app_set_metadata (app, KEY_REMOTE, remote);
	if (size > 0)
		gs_app_set_size_download (app, GS_SIZE_TYPE_VALID, size);
	if (dict_bool (offer, "Installed")) {
		gs_app_set_version (app, dict_str (offer, "InstalledVersion"));
		if (gs_app_get_state (app) == GS_APP_STATE_UNKNOWN ||
		    gs_app_get_state (app) == GS_APP_STATE_AVAILABLE)
			set_state (app, GS_APP_STATE_INSTALLED);
	} else {
		gs_app_set_version (app, dict_str (offer, "Version"));
		if (gs_app_get_state (app) != GS_APP_STATE_INSTALLING)
			set_state (app, GS_APP_STATE_AVAILABLE);
	}
	sizes = g_variant_lookup_value (offer, "IconSizes", G_VARIANT_TYPE ("au"));
	ensure_icon (self, app, remote, sizes);
	return app;
}

/* Applies an installed app's properties (`App` interface) to its GsApp. */
static GsApp *
app_from_installed (GsPluginFlatipfs *self, GVariant *props)
{
	const gchar *id = dict_str (props, "Id");
	const gchar *kind = dict_str (props, "Kind");
	const gchar *state = dict_str (props, "State");
	const gchar *available = dict_str (props, "AvailableVersion");
	const gchar *remote = dict_str (props, "Remote");
	gboolean runtime = g_str_equal (kind, "runtime");
	guint64 fetched = dict_u64 (props, "FetchedBytes");
	guint64 total = dict_u64 (props, "TotalBytes");
	GsApp *app;

	if (*id == '\0')
		return NULL;
	app = app_for_id (self, id, runtime);
	if (gs_app_get_name (app) == NULL) {
		const gchar *name = dict_str (props, "Name");
		gs_app_set_name (app, GS_APP_QUALITY_LOWEST, *name != '\0' ? name : id);
	}
	if (gs_app_get_summary (app) == NULL)
		gs_app_set_summary (app, GS_APP_QUALITY_LOWEST,
				    runtime ? "Runtime installed from IPFS" : "Installed from IPFS");
	/* GNOME Software lists only apps with a description. */
	if (gs_app_get_description (app) == NULL)
		gs_app_set_description (app, GS_APP_QUALITY_LOWEST,
					runtime ? "A runtime installed from IPFS by flatipfs."
						: "An app installed from IPFS by flatipfs.");
	gs_app_set_version (app, dict_str (props, "CurrentVersion"));
	if (*remote != '\0') {
		g_autofree gchar *origin_ui = g_strdup_printf ("%s (IPFS)", remote);
		gs_app_set_origin (app, remote);
		gs_app_set_origin_ui (app, origin_ui);
	}
	if (g_str_equal (state, "installing") || g_str_equal (state, "updating")) {
		set_state (app, GS_APP_STATE_INSTALLING);
	} else if (g_str_equal (state, "uninstalling")) {
		set_state (app, GS_APP_STATE_REMOVING);
	} else if (*available != '\0') {
		g_autofree gchar *details = g_strdup_printf (
			"Version %s is available from the IPFS remote “%s”.", available, remote);
		gs_app_set_update_version (app, available);
		gs_app_set_update_details_text (app, details);
		set_state (app, GS_APP_STATE_UPDATABLE_LIVE);
	} else {
		set_state (app, GS_APP_STATE_INSTALLED);
	}
	/* Runnable while its files still arrive from IPFS: say so. */
	if (g_str_equal (state, "degraded")) {
		g_autofree gchar *summary = NULL;
		guint percent = total > 0 ? (guint) (fetched * 100 / total) : 0;
		summary = g_strdup_printf ("Still being fetched from IPFS (%u%%): it runs, but may start slowly", percent);
		gs_app_set_summary (app, GS_APP_QUALITY_HIGHEST, summary);
		gs_app_set_metadata (app, "flatipfs::degraded", NULL);
		gs_app_set_metadata (app, "flatipfs::degraded", "true");
	} else if (g_strcmp0 (gs_app_get_metadata_item (app, "flatipfs::degraded"), "true") == 0) {
		gs_app_set_metadata (app, "flatipfs::degraded", NULL);
		gs_app_set_metadata (app, "flatipfs::degraded", "false");
		gs_app_set_summary (app, GS_APP_QUALITY_HIGHEST,
				    runtime ? "Runtime installed from IPFS" : "Installed from IPFS");
	}
	if (!runtime)
		ensure_icon (self, app, remote, NULL);
	else if (gs_app_get_icons (app) == NULL || gs_app_get_icons (app)->len == 0)
		ensure_icon (self, app, NULL, NULL);
	return app;
}

/* The offers of every trusted remote (`ListAvailable("")`): applies them;
 * returns them in `list` if given. */
static gboolean
load_offers (GsPluginFlatipfs *self, GsAppList *list, const gchar *words,
	     GCancellable *cancellable, GError **error)
{
	g_autoptr(GVariant) reply = NULL;
	g_autoptr(GVariant) offers = NULL;
	GVariantIter iter;
	GVariant *offer;
	guint rank = 0;

	if (words != NULL)
		reply = call (self, MANAGER_PATH, MANAGER_IFACE, "SearchAvailable",
			      g_variant_new ("(s)", words), "(aa{sv})", FALSE,
			      CALL_TIMEOUT_MS, cancellable, error);
	else
		reply = call (self, MANAGER_PATH, MANAGER_IFACE, "ListAvailable",
			      g_variant_new ("(s)", ""), "(aa{sv})", FALSE,
			      CALL_TIMEOUT_MS, cancellable, error);
	if (reply == NULL) {
		convert_call_error (error, "list the apps of the IPFS remotes");
		return FALSE;
	}
	offers = g_variant_get_child_value (reply, 0);
	g_variant_iter_init (&iter, offers);
	while ((offer = g_variant_iter_next_value (&iter)) != NULL) {
		GsApp *app = app_from_offer (self, offer);
		if (app != NULL && list != NULL) {
			/* Best first, as the daemon ranked them. */
			gs_app_set_match_value (app, 1000 - MIN (rank, 999u));
			gs_app_list_add (list, app);
		}
		rank++;
		g_clear_object (&app);
		g_variant_unref (offer);
	}
	return TRUE;
}

/* Every installed app and runtime: applied, and added to `list` if given. */
static gboolean
load_installed (GsPluginFlatipfs *self, GsAppList *list, GCancellable *cancellable, GError **error)
{
	g_autoptr(GVariant) reply = NULL;
	g_autoptr(GVariant) paths = NULL;
	GVariantIter iter;
	const gchar *path;

	reply = call (self, MANAGER_PATH, MANAGER_IFACE, "ListApps", NULL, "(ao)", FALSE,
		      CALL_TIMEOUT_MS, cancellable, error);
	if (reply == NULL) {
		convert_call_error (error, "list the apps installed from IPFS");
		return FALSE;
	}
	paths = g_variant_get_child_value (reply, 0);
	g_variant_iter_init (&iter, paths);
	while (g_variant_iter_next (&iter, "&o", &path)) {
		g_autoptr(GVariant) props = NULL;
		g_autoptr(GError) local_error = NULL;
		g_autoptr(GsApp) app = NULL;

		props = get_all (self, path, APP_IFACE, cancellable, &local_error);
		if (props == NULL) {
			/* Removed meanwhile. */
			g_debug ("flatipfs: %s: %s", path, local_error->message);
			continue;
		}
		app = app_from_installed (self, props);
		if (app != NULL && list != NULL)
			gs_app_list_add (list, app);
	}
	return TRUE;
}

/* Whether an installed app's object exists; its path in `path_out`. */
static gboolean
installed_path (GsPluginFlatipfs *self, const gchar *id, gchar **path_out,
		GCancellable *cancellable, GError **error)
{
	g_autoptr(GVariant) reply = NULL;

	reply = call (self, MANAGER_PATH, MANAGER_IFACE, "GetApp", g_variant_new ("(s)", id),
		      "(o)", FALSE, CALL_TIMEOUT_MS, cancellable, error);
	if (reply == NULL) {
		convert_call_error (error, "find the installed app");
		return FALSE;
	}
	g_variant_get (reply, "(o)", path_out);
	return TRUE;
}

/* Re-reads one app from the daemon after a job. */
static void
reload_app (GsPluginFlatipfs *self, GsApp *app, gboolean installed)
{
	g_autofree gchar *path = NULL;
	g_autoptr(GVariant) props = NULL;
	g_autoptr(GError) local_error = NULL;

	if (installed && installed_path (self, gs_app_get_id (app), &path, NULL, &local_error))
		props = get_all (self, path, APP_IFACE, NULL, &local_error);
	if (props != NULL) {
		g_autoptr(GsApp) same = app_from_installed (self, props);
	} else if (installed) {
		set_state (app, GS_APP_STATE_INSTALLED);
	} else {
		set_state (app, GS_APP_STATE_AVAILABLE);
	}
}

/* ------------------------------------------------------------------------ */
/* Plugin life */

static void
gs_plugin_flatipfs_init (GsPluginFlatipfs *self)
{
	GsPlugin *plugin = GS_PLUGIN (self);

	g_mutex_init (&self->lock);
	/* Wildcards come from appstream; icons are ours. */
	gs_plugin_add_rule (plugin, GS_PLUGIN_RULE_RUN_AFTER, "appstream");
	gs_plugin_add_rule (plugin, GS_PLUGIN_RULE_RUN_BEFORE, "icons");
}

static void
gs_plugin_flatipfs_dispose (GObject *object)
{
	GsPluginFlatipfs *self = GS_PLUGIN_FLATIPFS (object);

	g_clear_object (&self->bus);
	G_OBJECT_CLASS (gs_plugin_flatipfs_parent_class)->dispose (object);
}

static void
gs_plugin_flatipfs_finalize (GObject *object)
{
	GsPluginFlatipfs *self = GS_PLUGIN_FLATIPFS (object);

	g_mutex_clear (&self->lock);
	G_OBJECT_CLASS (gs_plugin_flatipfs_parent_class)->finalize (object);
}

static void
setup_thread (GTask *task, gpointer source, gpointer task_data, GCancellable *cancellable)
{
	GsPluginFlatipfs *self = GS_PLUGIN_FLATIPFS (source);
	g_autoptr(GVariant) reply = NULL;
	g_autoptr(GError) local_error = NULL;
	g_autoptr(GVariant) version = NULL;

	g_object_get (self, "system-bus-connection", &self->bus, NULL);
	if (self->bus == NULL) {
		g_task_return_new_error (task, GS_PLUGIN_ERROR, GS_PLUGIN_ERROR_NOT_SUPPORTED,
					 "no system bus");
		return;
	}
	/* Is flatipfsd there (or activatable)? */
	reply = call (self, MANAGER_PATH, "org.freedesktop.DBus.Properties", "Get",
		      g_variant_new ("(ss)", MANAGER_IFACE, "Version"), "(v)", FALSE,
		      5000, cancellable, &local_error);
	if (reply == NULL) {
		g_task_return_new_error (task, GS_PLUGIN_ERROR, GS_PLUGIN_ERROR_NOT_SUPPORTED,
					 "flatipfsd is not on the system bus: %s",
					 local_error->message);
		return;
	}
	g_variant_get (reply, "(v)", &version);
	g_debug ("flatipfs: daemon %s", g_variant_get_string (version, NULL));
	g_task_return_boolean (task, TRUE);
}

static void
gs_plugin_flatipfs_setup_async (GsPlugin *plugin, GCancellable *cancellable,
				GAsyncReadyCallback callback, gpointer user_data)
{
	g_autoptr(GTask) task = g_task_new (plugin, cancellable, callback, user_data);

	g_task_set_source_tag (task, gs_plugin_flatipfs_setup_async);
	g_task_run_in_thread (task, setup_thread);
}

static gboolean
gs_plugin_flatipfs_setup_finish (GsPlugin *plugin, GAsyncResult *result, GError **error)
{
	return g_task_propagate_boolean (G_TASK (result), error);
}

/* ------------------------------------------------------------------------ */
/* Listing and searching */

typedef struct {
	GsAppQueryTristate installed;
	GsAppQueryTristate curated;
	gchar *words;
} ListData;

static void
list_data_free (ListData *data)
{
	g_free (data->words);
	g_free (data);
}

static void
list_thread (GTask *task, gpointer source, gpointer task_data, GCancellable *cancellable)
{
	GsPluginFlatipfs *self = GS_PLUGIN_FLATIPFS (source);
	ListData *data = task_data;
	g_autoptr(GsAppList) list = gs_app_list_new ();
	g_autoptr(GError) local_error = NULL;

	if (data->installed == GS_APP_QUERY_TRISTATE_TRUE) {
		/* Catalog data first (names, icons), then the daemon's state. */
		if (!load_offers (self, NULL, NULL, cancellable, &local_error)) {
			g_debug ("flatipfs: %s", local_error->message);
			g_clear_error (&local_error);
		}
		if (!load_installed (self, list, cancellable, &local_error)) {
			g_task_return_error (task, g_steal_pointer (&local_error));
			return;
		}
	} else if (data->words != NULL || data->curated == GS_APP_QUERY_TRISTATE_TRUE) {
		if (!load_offers (self, list, data->words, cancellable, &local_error)) {
			g_task_return_error (task, g_steal_pointer (&local_error));
			return;
		}
		/* Installed ones show their installed state and updates. */
		if (!load_installed (self, NULL, cancellable, &local_error))
			g_debug ("flatipfs: %s", local_error->message);
	}
	g_debug ("flatipfs: %u apps listed", gs_app_list_length (list));
	g_task_return_pointer (task, g_steal_pointer (&list), g_object_unref);
}

static void
gs_plugin_flatipfs_list_apps_async (GsPlugin *plugin, GsAppQuery *query,
				    GsPluginListAppsFlags flags, GCancellable *cancellable,
				    GAsyncReadyCallback callback, gpointer user_data)
{
	g_autoptr(GTask) task = g_task_new (plugin, cancellable, callback, user_data);
	ListData *data = g_new0 (ListData, 1);
	const gchar * const *keywords = NULL;

	g_task_set_source_tag (task, gs_plugin_flatipfs_list_apps_async);
	if (query != NULL) {
		data->installed = gs_app_query_get_is_installed (query);
		data->curated = gs_app_query_get_is_curated (query);
		keywords = gs_app_query_get_keywords (query);
	}
	if (keywords != NULL)
		data->words = g_strjoinv (" ", (gchar **) keywords);
	g_task_set_task_data (task, data, (GDestroyNotify) list_data_free);
	if (query == NULL || gs_app_query_get_n_properties_set (query) != 1 ||
	    (data->installed != GS_APP_QUERY_TRISTATE_TRUE && data->words == NULL &&
	     data->curated != GS_APP_QUERY_TRISTATE_TRUE)) {
		g_task_return_new_error (task, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED,
					 "Unsupported query");
		return;
	}
	g_task_run_in_thread (task, list_thread);
}

static GsAppList *
gs_plugin_flatipfs_list_apps_finish (GsPlugin *plugin, GAsyncResult *result, GError **error)
{
	return g_task_propagate_pointer (G_TASK (result), error);
}

/* ------------------------------------------------------------------------ */
/* Refining: wildcards (an id from elsewhere, e.g. `action install ID`) */

static void
refine_thread (GTask *task, gpointer source, gpointer task_data, GCancellable *cancellable)
{
	GsPluginFlatipfs *self = GS_PLUGIN_FLATIPFS (source);
	GsAppList *list = task_data;
	g_autoptr(GsAppList) wildcards = gs_app_list_new ();
	gboolean loaded = FALSE;

	for (guint i = 0; i < gs_app_list_length (list); i++) {
		GsApp *app = gs_app_list_index (list, i);
		if (gs_app_has_quirk (app, GS_APP_QUIRK_IS_WILDCARD) && gs_app_get_id (app) != NULL)
			gs_app_list_add (wildcards, app);
	}
	for (guint i = 0; i < gs_app_list_length (wildcards); i++) {
		GsApp *wildcard = gs_app_list_index (wildcards, i);
		g_autofree gchar *id = g_strdup (gs_app_get_id (wildcard));
		g_autoptr(GsApp) ours = NULL;

		if (g_str_has_suffix (id, ".desktop"))
			id[strlen (id) - strlen (".desktop")] = '\0';
		if (!loaded) {
			g_autoptr(GError) local_error = NULL;
			if (!load_offers (self, NULL, NULL, cancellable, &local_error) ||
			    !load_installed (self, NULL, cancellable, &local_error))
				g_debug ("flatipfs: refine: %s", local_error->message);
			loaded = TRUE;
		}
		ours = gs_plugin_cache_lookup (GS_PLUGIN (self), id);
		if (ours != NULL && gs_app_get_state (ours) != GS_APP_STATE_UNKNOWN)
			gs_app_list_add (list, ours);
	}
	g_task_return_boolean (task, TRUE);
}

static void
gs_plugin_flatipfs_refine_async (GsPlugin *plugin, GsAppList *list, GsPluginRefineFlags flags,
				 GCancellable *cancellable, GAsyncReadyCallback callback,
				 gpointer user_data)
{
	g_autoptr(GTask) task = g_task_new (plugin, cancellable, callback, user_data);
	gboolean any = FALSE;

	g_task_set_source_tag (task, gs_plugin_flatipfs_refine_async);
	for (guint i = 0; i < gs_app_list_length (list); i++) {
		if (gs_app_has_quirk (gs_app_list_index (list, i), GS_APP_QUIRK_IS_WILDCARD))
			any = TRUE;
	}
	if (!any) {
		g_task_return_boolean (task, TRUE);
		return;
	}
	g_task_set_task_data (task, g_object_ref (list), g_object_unref);
	g_task_run_in_thread (task, refine_thread);
}

static gboolean
gs_plugin_flatipfs_refine_finish (GsPlugin *plugin, GAsyncResult *result, GError **error)
{
	return g_task_propagate_boolean (G_TASK (result), error);
}

/* ------------------------------------------------------------------------ */
/* Refreshing: the daemon's Refresh job (indexes, catalogs, AvailableVersion) */

static void
refresh_thread (GTask *task, gpointer source, gpointer task_data, GCancellable *cancellable)
{
	GsPluginFlatipfs *self = GS_PLUGIN_FLATIPFS (source);
	guint64 cache_age_secs = *(guint64 *) task_data;
	gboolean interactive = GPOINTER_TO_INT (g_object_get_data (G_OBJECT (task), "interactive"));
	g_autoptr(GError) local_error = NULL;
	GVariantBuilder options;
	gint64 now = g_get_monotonic_time ();

	g_mutex_lock (&self->lock);
	if (self->last_refresh != 0 &&
	    (guint64) (now - self->last_refresh) / G_USEC_PER_SEC < cache_age_secs) {
		g_mutex_unlock (&self->lock);
		g_task_return_boolean (task, TRUE);
		return;
	}
	g_mutex_unlock (&self->lock);

	g_variant_builder_init (&options, G_VARIANT_TYPE ("a{sv}"));
	if (!run_job (self, NULL, MANAGER_PATH, MANAGER_IFACE, "Refresh",
		      g_variant_new ("(a{sv})", &options), "(o)", interactive,
		      "check the IPFS remotes", cancellable, &local_error)) {
		g_task_return_error (task, g_steal_pointer (&local_error));
		return;
	}
	g_mutex_lock (&self->lock);
	self->last_refresh = g_get_monotonic_time ();
	g_mutex_unlock (&self->lock);
	gs_plugin_updates_changed (GS_PLUGIN (self));
	g_task_return_boolean (task, TRUE);
}

static void
gs_plugin_flatipfs_refresh_metadata_async (GsPlugin *plugin, guint64 cache_age_secs,
					   GsPluginRefreshMetadataFlags flags,
					   GCancellable *cancellable,
					   GAsyncReadyCallback callback, gpointer user_data)
{
	g_autoptr(GTask) task = g_task_new (plugin, cancellable, callback, user_data);
	guint64 *age = g_new (guint64, 1);

	*age = cache_age_secs;
	g_task_set_source_tag (task, gs_plugin_flatipfs_refresh_metadata_async);
	g_task_set_task_data (task, age, g_free);
	g_object_set_data (G_OBJECT (task), "interactive",
			   GINT_TO_POINTER ((flags & GS_PLUGIN_REFRESH_METADATA_FLAGS_INTERACTIVE) != 0));
	g_task_run_in_thread (task, refresh_thread);
}

static gboolean
gs_plugin_flatipfs_refresh_metadata_finish (GsPlugin *plugin, GAsyncResult *result, GError **error)
{
	return g_task_propagate_boolean (G_TASK (result), error);
}

static void
gs_plugin_flatipfs_class_init (GsPluginFlatipfsClass *klass)
{
	GObjectClass *object_class = G_OBJECT_CLASS (klass);
	GsPluginClass *plugin_class = GS_PLUGIN_CLASS (klass);

	object_class->dispose = gs_plugin_flatipfs_dispose;
	object_class->finalize = gs_plugin_flatipfs_finalize;
	plugin_class->setup_async = gs_plugin_flatipfs_setup_async;
	plugin_class->setup_finish = gs_plugin_flatipfs_setup_finish;
	plugin_class->list_apps_async = gs_plugin_flatipfs_list_apps_async;
	plugin_class->list_apps_finish = gs_plugin_flatipfs_list_apps_finish;
	plugin_class->refine_async = gs_plugin_flatipfs_refine_async;
	plugin_class->refine_finish = gs_plugin_flatipfs_refine_finish;
	plugin_class->refresh_metadata_async = gs_plugin_flatipfs_refresh_metadata_async;
	plugin_class->refresh_metadata_finish = gs_plugin_flatipfs_refresh_metadata_finish;
}

GType
gs_plugin_query_type (void)
{
	return gs_plugin_flatipfs_get_type ();
}

/* ------------------------------------------------------------------------ */
/* Actions (exported symbols; GNOME Software calls them in a worker thread) */

static gboolean
interactive (GsPlugin *plugin)
{
	return gs_plugin_has_flags (plugin, GS_PLUGIN_FLAGS_INTERACTIVE);
}

gboolean
gs_plugin_add_updates (GsPlugin *plugin, GsAppList *list, GCancellable *cancellable, GError **error)
{
	GsPluginFlatipfs *self = GS_PLUGIN_FLATIPFS (plugin);
	g_autoptr(GsAppList) installed = gs_app_list_new ();

	if (!load_offers (self, NULL, NULL, cancellable, NULL))
		g_debug ("flatipfs: no catalog data for updates");
	if (!load_installed (self, installed, cancellable, error))
		return FALSE;
	for (guint i = 0; i < gs_app_list_length (installed); i++) {
		GsApp *app = gs_app_list_index (installed, i);
		if (gs_app_get_state (app) == GS_APP_STATE_UPDATABLE_LIVE)
			gs_app_list_add (list, app);
	}
	return TRUE;
}

gboolean
gs_plugin_app_install (GsPlugin *plugin, GsApp *app, GCancellable *cancellable, GError **error)
{
	GsPluginFlatipfs *self = GS_PLUGIN_FLATIPFS (plugin);
	const gchar *remote;
	GVariantBuilder options;

	if (!gs_app_has_management_plugin (app, plugin))
		return TRUE;
	remote = gs_app_get_metadata_item (app, KEY_REMOTE);
	if (remote == NULL)
		remote = gs_app_get_origin (app);
	if (remote == NULL) {
		g_set_error (error, GS_PLUGIN_ERROR, GS_PLUGIN_ERROR_NOT_SUPPORTED,
			     "%s is offered by no IPFS remote", gs_app_get_id (app));
		return FALSE;
	}
	g_variant_builder_init (&options, G_VARIANT_TYPE ("a{sv}"));
	g_variant_builder_add (&options, "{sv}", "remote", g_variant_new_string (remote));
	gs_app_set_state (app, GS_APP_STATE_INSTALLING);
	gs_app_set_progress (app, GS_APP_PROGRESS_UNKNOWN);
	if (!run_job (self, app, MANAGER_PATH, MANAGER_IFACE, "Install",
		      g_variant_new ("(sa{sv})", gs_app_get_id (app), &options), "(oo)",
		      interactive (plugin), "install the app", cancellable, error)) {
		gs_app_set_state_recover (app);
		gs_app_set_progress (app, GS_APP_PROGRESS_UNKNOWN);
		return FALSE;
	}
	gs_app_set_progress (app, GS_APP_PROGRESS_UNKNOWN);
	reload_app (self, app, TRUE);
	return TRUE;
}

gboolean
gs_plugin_app_remove (GsPlugin *plugin, GsApp *app, GCancellable *cancellable, GError **error)
{
	GsPluginFlatipfs *self = GS_PLUGIN_FLATIPFS (plugin);
	g_autofree gchar *path = NULL;
	GVariantBuilder options;

	if (!gs_app_has_management_plugin (app, plugin))
		return TRUE;
	if (!installed_path (self, gs_app_get_id (app), &path, cancellable, error))
		return FALSE;
	g_variant_builder_init (&options, G_VARIANT_TYPE ("a{sv}"));
	gs_app_set_state (app, GS_APP_STATE_REMOVING);
	gs_app_set_progress (app, GS_APP_PROGRESS_UNKNOWN);
	if (!run_job (self, app, path, APP_IFACE, "Uninstall",
		      g_variant_new ("(a{sv})", &options), "(o)",
		      interactive (plugin), "remove the app", cancellable, error)) {
		gs_app_set_state_recover (app);
		return FALSE;
	}
	gs_app_set_progress (app, GS_APP_PROGRESS_UNKNOWN);
	/* Still offered by its remote: available again (else unknown). */
	if (gs_app_get_metadata_item (app, KEY_REMOTE) != NULL)
		set_state (app, GS_APP_STATE_AVAILABLE);
	else
		set_state (app, GS_APP_STATE_UNKNOWN);
	return TRUE;
}

gboolean
gs_plugin_update_app (GsPlugin *plugin, GsApp *app, GCancellable *cancellable, GError **error)
{
	GsPluginFlatipfs *self = GS_PLUGIN_FLATIPFS (plugin);
	g_autofree gchar *path = NULL;
	GVariantBuilder options;

	if (!gs_app_has_management_plugin (app, plugin))
		return TRUE;
	if (!installed_path (self, gs_app_get_id (app), &path, cancellable, error))
		return FALSE;
	g_variant_builder_init (&options, G_VARIANT_TYPE ("a{sv}"));
	gs_app_set_state (app, GS_APP_STATE_INSTALLING);
	gs_app_set_progress (app, GS_APP_PROGRESS_UNKNOWN);
	if (!run_job (self, app, path, APP_IFACE, "Update",
		      g_variant_new ("(sa{sv})", "", &options), "(o)",
		      interactive (plugin), "update the app", cancellable, error)) {
		gs_app_set_state_recover (app);
		gs_app_set_progress (app, GS_APP_PROGRESS_UNKNOWN);
		return FALSE;
	}
	gs_app_set_progress (app, GS_APP_PROGRESS_UNKNOWN);
	gs_app_set_update_version (app, NULL);
	reload_app (self, app, TRUE);
	gs_plugin_updates_changed (plugin);
	return TRUE;
}

gboolean
gs_plugin_launch (GsPlugin *plugin, GsApp *app, GCancellable *cancellable, GError **error)
{
	const gchar *argv[] = { "flatpak", "run", NULL, NULL };

	if (!gs_app_has_management_plugin (app, plugin))
		return TRUE;
	argv[2] = gs_app_get_id (app);
	if (!g_spawn_async (NULL, (gchar **) argv, NULL,
			    G_SPAWN_SEARCH_PATH | G_SPAWN_STDOUT_TO_DEV_NULL,
			    NULL, NULL, NULL, error)) {
		gs_utils_error_convert_gio (error);
		return FALSE;
	}
	return TRUE;
}

void
gs_plugin_adopt_app (GsPlugin *plugin, GsApp *app)
{
	/* Apps of other plugins are never ours: every flatipfs app is made
	 * here, with its management plugin set. */
}
