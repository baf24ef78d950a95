//! berthd: the CRI v1 server (ImageService now, RuntimeService with the pods issue)
