/* The one place the release number lives (tools print it for --version,
 * the man pages carry it in their footer). */
#ifndef VDK_VERSION_H
#define VDK_VERSION_H

#define VDK_VERSION "0.9.0"

#endif
